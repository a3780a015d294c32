"""Delayed messages made visible: the ``delayed_listing`` broker capability.

A message published with a ``not_before`` in the future (``apply_async(countdown=...)``,
``eta=``, a retry's backoff) waits in its queue's delayed store, counted by
:meth:`~chicory.broker.Broker.counts` but otherwise out of sight. A broker declaring
``Capabilities(delayed_listing=True)`` also implements :class:`DelayedListing`:

* :meth:`DelayedListing.delayed_page`: the delayed messages of a queue one page at a time,
  soonest due first (then by message id), after a cursor;
* :meth:`DelayedListing.remove_delayed`: remove one delayed message by id, atomically with
  respect to it falling due (it is either removed, and never delivered, or already gone).

``chicory delayed list|remove`` and ``chicory cancel`` use them through
:class:`chicory.admin.Admin`; the conformance suite's ``DelayedSuite`` holds a broker to
them. On a broker without the capability, :func:`delayed_listing` raises
:class:`~chicory.errors.CapabilityError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Protocol, runtime_checkable

import attrs

from chicory.broker import Broker
from chicory.errors import CapabilityError

__all__ = ["DelayedListing", "DelayedMessage", "DelayedPage", "delayed_listing"]


@attrs.frozen(kw_only=True)
class DelayedMessage:
    """One message waiting for its time.

    Attributes:
        id: The broker's message id (what :meth:`DelayedListing.remove_delayed` takes).
        queue: The queue it will be delivered on.
        body: The body, as published.
        headers: The headers, as published.
        due_at: Aware-UTC time from which it may be delivered.
    """

    id: str
    queue: str
    body: bytes
    headers: Mapping[str, str]
    due_at: datetime


@attrs.frozen(kw_only=True)
class DelayedPage:
    """One page of a queue's delayed messages.

    Attributes:
        messages: Soonest due first (then by id).
        next_after: Pass it as ``after`` for the next page; ``None`` when this page ended
            the listing.
    """

    messages: list[DelayedMessage]
    next_after: str | None


@runtime_checkable
class DelayedListing(Protocol):
    """The two operations of the ``delayed_listing`` capability (see the module docstring).

    Both may raise :class:`~chicory.errors.BrokerConnectionError` when the broker cannot be
    reached, and may be cancelled (a cancelled ``remove_delayed`` happened whole or not).
    """

    async def delayed_page(
        self, queue: str, *, after: str | None = None, limit: int = 100
    ) -> DelayedPage:
        """Return up to ``limit`` delayed messages of ``queue``, soonest due first.

        Args:
            queue: The queue.
            after: A ``next_after`` of an earlier page: continue after it. ``None`` starts
                at the soonest.
            limit: The most messages to return (at least 1).

        Raises:
            ValueError: ``limit`` is below 1, or ``after`` is not a cursor of this broker.
        """
        ...

    async def remove_delayed(self, queue: str, message_id: str) -> bool:
        """Remove the delayed message ``message_id`` of ``queue`` so it is never delivered.

        Returns:
            False, doing nothing, when ``queue`` holds no delayed message of that id (it
            was never delayed, fell due already, or was removed).
        """
        ...


def delayed_listing(broker: Broker, *, needed_for: str) -> DelayedListing:
    """Return ``broker`` as a :class:`DelayedListing`, or say why it is not one.

    Raises:
        CapabilityError: the broker does not declare ``Capabilities(delayed_listing=True)``.
    """
    if not getattr(broker.capabilities, "delayed_listing", False) or not isinstance(
        broker, DelayedListing
    ):
        raise CapabilityError(
            f"{needed_for} needs a broker with the 'delayed_listing' capability, and "
            f"{broker!r} does not declare it (Capabilities.delayed_listing=False); its delayed "
            "messages can be counted (chicory queues) but not listed or removed"
        )
    return broker
