"""What a broker declares it can do: :class:`Capabilities`.

Core reads a broker's capabilities to decide what it may ask of it (and refuses, with a
:class:`~chicory.errors.CapabilityError`, what the broker cannot do); the conformance suite
skips by them, loudly. The protocol they describe is in :mod:`chicory.broker`, which also
exports these names.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = ["Capabilities", "LeaseModel"]

LeaseModel = Literal["timed", "session"]
"""How a held delivery's hold ends without a settle (see the module docstring)."""


@attrs.frozen(kw_only=True)
class Capabilities:
    """What a broker declares it can do. The conformance suite skips by these, loudly.

    Attributes:
        delayed_delivery: ``publish(..., not_before=...)`` and ``nack(delay=...)`` hold the
            message back until its time.
        lease_renewal: held deliveries have a lease that ``extend_lease`` renews and whose
            expiry makes the message available again.
        dead_letter: dead-letter operations (list, replay, delete, purge) are supported.
        fifo: one consumer receives ready messages of one queue in publish order.
        priorities: the broker delivers the ready messages of a queue highest
            ``chicory-priority`` header first (0 to 9, absent meaning 0; see
            :mod:`chicory.priority`), in publish order within one priority.
        atomic_retry: ``Delivery.retry`` publishes the replacement and acks in one step.
        shared: several processes (or machines) can share the broker's queues.
        max_body_bytes: the largest body the broker accepts, or ``None`` for no limit of
            its own.
        lease_seconds: how long a held delivery stays leased without renewal (the lease a
            broker built with ``lease_seconds=L`` keeps: ``L``, or ``L`` rounded to the
            broker's granularity); workers renew every third of it unless told otherwise.
            Required when ``lease_renewal`` is declared: without it workers renew every
            10 s, whatever the real lease.
        lease_model: ``"timed"`` (holds are leases that expire unless renewed) or
            ``"session"`` (holds last as long as the consumer's connection or channel);
            see the module docstring.
        delete_queue: the broker is a :class:`QueueDeleter`: it can delete a queue and
            everything in it (used to clean up after tests and by tooling).
        dead_letter_max_count: the most dead letters the broker keeps per queue (recording
            one more drops the oldest), or ``None`` for no limit.
        dead_letter_max_age: seconds after which the broker drops a dead letter (it is
            neither listed nor counted from then on), or ``None`` for no limit.
        inspection: the broker implements the operators' operations of
            :class:`chicory.inspection.InspectableBroker` (list queues, queue stats, dead
            letters by page, one dead letter, requeue a dead letter with a new body).
        delayed_listing: the broker implements :class:`chicory.delayed.DelayedListing`
            (list a queue's delayed messages by page, remove one by id).
        flow_control: the broker implements :class:`chicory.flow.FlowControl` (rate-limit
            turns and concurrency permits shared by every worker).
        unique_enqueue: the broker implements :class:`chicory.unique.UniqueEnqueue`
            (publish a message unless its key is held, atomically; release a key).
        transactional_enqueue: the broker implements
            :class:`chicory.transactions.TransactionalPublisher`: it writes messages on the
            caller's own database connection, inside its open transaction
            (``async with app.transaction(conn):``).
    """

    delayed_delivery: bool = True
    lease_renewal: bool = True
    dead_letter: bool = True
    fifo: bool = True
    priorities: bool = False
    atomic_retry: bool = False
    shared: bool = False
    max_body_bytes: int | None = None
    lease_seconds: float | None = None
    lease_model: LeaseModel = attrs.field(
        default="timed", validator=attrs.validators.in_(("timed", "session"))
    )
    delete_queue: bool = False
    dead_letter_max_count: int | None = None
    dead_letter_max_age: float | None = None
    inspection: bool = False
    delayed_listing: bool = False
    flow_control: bool = False
    unique_enqueue: bool = False
    transactional_enqueue: bool = False
