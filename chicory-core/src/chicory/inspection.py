"""Optional broker operations for operators' tools: the ``inspection`` capability.

The core broker protocol (:mod:`chicory.broker`) is what workers and producers need. Tools
that watch and repair a deployment (``chicory queues``, ``chicory dead ...``, the dashboard,
users' scripts, all through :class:`chicory.admin.Admin`) need a little more from a broker:

* :meth:`InspectableBroker.queues`: which queues exist;
* :meth:`InspectableBroker.queue_stats`: counts of many queues at once, with the number of
  live consumers and the age of the oldest ready message;
* :meth:`InspectableBroker.dead_letter_page`: dead letters one page at a time, after a
  cursor, within a time range, oldest or newest first, so 100,000 dead letters are never
  read at once;
* :meth:`InspectableBroker.get_dead_letter`: one dead letter by id;
* :meth:`InspectableBroker.requeue_dead_letter`: replace a dead letter by a new ready
  message in one atomic step (how a replay restarts the task's retry budget: core rewrites
  the body, the broker swaps it in).

A broker offering them declares ``Capabilities(inspection=True)`` and implements all five;
the conformance suite's ``InspectionSuite`` holds it to that. Core never calls them on a
broker that does not declare the capability: :func:`inspectable` raises
:class:`~chicory.errors.CapabilityError` instead, and the admin layer falls back to the core
protocol where it can (see :mod:`chicory.admin`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol, runtime_checkable

import attrs

from chicory.broker import Broker, DeadLetter
from chicory.errors import CapabilityError

__all__ = [
    "DeadLetterPage",
    "InspectableBroker",
    "Inspection",
    "QueueStats",
    "RecordForgetting",
    "inspectable",
    "missing_inspection",
]


@attrs.frozen(kw_only=True)
class QueueStats:
    """What a broker can tell about one queue.

    Attributes:
        queue: The queue name.
        ready: Messages waiting to be delivered now.
        in_flight: Delivered and not yet settled.
        delayed: Waiting for their ``not_before`` time.
        dead: Dead letters of the queue.
        consumers: Live consumers of the queue, or ``None`` when the broker cannot tell.
        oldest_ready_at: When the oldest ready message became ready (published, or fell
            due), or ``None`` when nothing is ready.
    """

    queue: str
    ready: int = 0
    in_flight: int = 0
    delayed: int = 0
    dead: int = 0
    consumers: int | None = None
    oldest_ready_at: datetime | None = None


@attrs.frozen(kw_only=True)
class DeadLetterPage:
    """One page of a queue's dead letters.

    Attributes:
        letters: The dead letters, in the order asked for.
        next_after: Pass it as ``after`` to get the next page; ``None`` when this page
            ended the listing.
    """

    letters: list[DeadLetter]
    next_after: str | None


@runtime_checkable
class Inspection(Protocol):
    """The five operations of the ``inspection`` capability. See the module docstring.

    Every method may raise :class:`~chicory.errors.BrokerConnectionError` when the broker
    cannot be reached, and may be cancelled; a cancelled ``requeue_dead_letter`` either
    happened whole or not at all.
    """

    async def queues(self) -> list[str]:
        """Return the names of every queue the broker knows, sorted.

        A queue is known once a message was published to it, a consumer consumed it, or it
        holds dead letters; a broker may forget a queue that is empty and unused.
        """
        ...

    async def queue_stats(self, queues: Sequence[str]) -> list[QueueStats]:
        """Return the stats of each of ``queues``, in that order, in as few round trips as
        possible. An unknown queue has all counts zero."""
        ...

    async def dead_letter_page(
        self,
        queue: str,
        *,
        after: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
    ) -> DeadLetterPage:
        """Return up to ``limit`` dead letters of ``queue``, from just past ``after``.

        Args:
            queue: The queue.
            after: A ``next_after`` of an earlier page (or a dead letter id): start after
                that letter in the listing's order. ``None`` starts at the beginning.
            limit: The most letters to return (at least 1).
            since: Only letters dead-lettered at or after this time.
            until: Only letters dead-lettered before this time.
            newest_first: List newest first instead of oldest first.

        Raises:
            ValueError: ``limit`` is below 1, or a time is naive.
        """
        ...

    async def get_dead_letter(self, queue: str, dead_letter_id: str) -> DeadLetter | None:
        """Return one dead letter of ``queue``, or ``None`` if there is no such letter."""
        ...

    async def requeue_dead_letter(
        self, queue: str, dead_letter_id: str, body: bytes, headers: Mapping[str, str]
    ) -> bool:
        """Delete a dead letter and publish ``body`` and ``headers`` as a new ready message
        on ``queue`` (a new message id, no deliveries counted), in one atomic step.

        Returns:
            False, doing nothing, if ``queue`` has no dead letter ``dead_letter_id``.

        Raises:
            MessageTooLargeError: ``body`` is over the broker's ``max_body_bytes``.
        """
        ...


@runtime_checkable
class InspectableBroker(Broker, Inspection, Protocol):
    """A broker declaring ``Capabilities(inspection=True)``: the core protocol and the five
    operations of :class:`Inspection`."""


@runtime_checkable
class RecordForgetting(Protocol):
    """A result backend that can delete a task's record: how a replay re-opens a task whose
    final ``FAILURE`` record would otherwise stand until it expires (and answer every
    ``get()`` and ``wait()`` of the replayed run at once). Optional: the memory and Redis
    result backends offer it; on others a replayed task's old record stays until the new
    run's final record replaces it."""

    async def forget(self, task_id: str) -> bool:
        """Delete the record of ``task_id``; return whether there was one.

        Raises:
            ResultBackendError: the backend could not be reached.
        """
        ...


def missing_inspection(broker: Broker, needed_for: str) -> CapabilityError:
    """The error saying ``broker`` lacks the ``inspection`` capability ``needed_for`` needs."""
    return CapabilityError(
        f"{needed_for} needs a broker with the 'inspection' capability, and {broker!r} does "
        "not declare it (Capabilities.inspection=False); upgrade the broker plugin, or see "
        "docs/operations.md for what works without it"
    )


def inspectable(broker: Broker, *, needed_for: str) -> InspectableBroker:
    """Return ``broker`` as an :class:`InspectableBroker`, or say why it is not one.

    Args:
        broker: The broker.
        needed_for: What the caller wanted to do, for the error message.

    Raises:
        CapabilityError: the broker does not declare ``Capabilities(inspection=True)``.
    """
    if not broker.capabilities.inspection or not isinstance(broker, InspectableBroker):
        raise missing_inspection(broker, needed_for)
    return broker
