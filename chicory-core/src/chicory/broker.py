"""The broker protocol: what a plugin must implement to move Chicory's bytes.

A broker never sees tasks, delivery modes or retry policies: it stores opaque bodies with
string headers in named queues and hands them out as :class:`Delivery` objects that the
core worker settles. Everything about *when* to settle lives in core
(:mod:`chicory.worker.ack`).

Lifecycle::

    async with broker:                         # connect() ... close()
        await broker.publish("default", body, headers)
        async with broker.consume(["default"], prefetch=10) as consumer:
            for delivery in await consumer.fetch(10, timeout=1.0):
                ...
                await delivery.ack()

Batch-friendly by contract: :meth:`Broker.publish_many` enqueues many messages in one
round trip, :meth:`Consumer.fetch` returns up to ``max_count`` deliveries in one call, and
:meth:`Consumer.ack_many` / :meth:`Consumer.extend_leases` settle a batch at once.

Cancellation: every coroutine here may be cancelled. A cancelled ``publish`` may or may
not have enqueued its message; a cancelled ``ack`` may or may not have taken effect (the
delivery is then redelivered later, which at-least-once tolerates). The worker shields the
settle calls that must happen and bounds them with a timeout.

Leases. A delivery is *held* by its consumer until it is settled; while it is held no other
consumer gets the message. How holding ends without a settle is the broker's **lease
model** (:attr:`Capabilities.lease_model`):

* ``"timed"`` (Redis, SQL tables, SQS): the hold is a lease of ``lease_seconds`` that the
  holder renews with :meth:`Delivery.extend_lease` / :meth:`Consumer.extend_leases`. A renewal
  makes the lease end a full lease after the renewal reaches the broker (not after the
  previous end), so a renewal that lands late but before the lease ended keeps the delivery.
  A broker with timed leases declares ``lease_renewal=True`` and ``lease_seconds``: workers
  renew every third of it, and a lease shorter than declared makes them lose running work.
* ``"session"`` (RabbitMQ, advisory-lock designs): the hold lasts as long as the consumer's
  connection or channel. It never expires while connected and needs no renewal; when the
  session ends (the connection drops, the channel closes, the process dies) the broker makes
  the unsettled deliveries ready again at once. Such a broker declares
  ``lease_model="session"`` and ``lease_renewal=False``; if it reconnects a consumer
  transparently, deliveries of the old session are stale (RabbitMQ delivery tags belong to
  their channel, and a new channel numbers its deliveries from 1 again).

A delivery whose lease was **lost** (it expired and the message was handed to another
consumer, or its session ended) can no longer settle anything: ``ack``, ``nack``, ``retry``,
``dead_letter`` and ``extend_lease`` on it do nothing (no removal, no requeued copy, no
replacement published, no dead letter, no lease taken back) and raise nothing;
:meth:`Consumer.ack_many` returns it, which is how a holder learns of the loss. Until
another consumer got the message, a settle of an expired lease may still take effect.

Time. Lease durations are measured on one clock, the broker's: a networked broker uses its
server's clock (Redis idle time, PostgreSQL ``clock_timestamp()``), an in-process one a
local clock; a lease is never judged by comparing a worker's clock with the server's.
``not_before`` and :attr:`DeadLetter.dead_at` are absolute aware-UTC instants that the broker
compares with its own current UTC time, so producers and brokers need synchronized clocks
(NTP); the conformance suite allows ``BrokerHarness.clock_tolerance`` of skew.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import attrs

from chicory.capabilities import Capabilities, LeaseModel
from chicory.errors import CapabilityError

__all__ = [
    "Broker",
    "Capabilities",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "LeaseModel",
    "OutgoingMessage",
    "QueueCounts",
    "QueueDeleter",
    "delete_queue",
    "outgoing_message",
]


@attrs.frozen(kw_only=True)
class OutgoingMessage:
    """One message for :meth:`Broker.publish_many`.

    Attributes:
        body: Opaque bytes (a Chicory envelope when published by core).
        headers: Small string metadata that brokers must preserve verbatim.
        not_before: Aware-UTC time before which the message must not be delivered.
    """

    body: bytes
    headers: Mapping[str, str] = attrs.field(factory=dict)
    not_before: datetime | None = None


_new_object = object.__new__
_set_body, _set_headers, _set_not_before = (
    OutgoingMessage.__dict__[name].__set__ for name in ("body", "headers", "not_before")
)


def outgoing_message(
    body: bytes, headers: Mapping[str, str], not_before: datetime | None = None
) -> OutgoingMessage:
    """``OutgoingMessage(body=body, headers=headers, not_before=not_before)``, for the
    publish path (one per ``delay()``): the same message at about half the cost, its slots
    filled directly instead of through keyword parsing and a frozen ``__setattr__`` each."""
    message: OutgoingMessage = _new_object(OutgoingMessage)
    _set_body(message, body)
    _set_headers(message, headers)
    _set_not_before(message, not_before)
    return message


@attrs.frozen(kw_only=True)
class QueueCounts:
    """A snapshot of one queue's message counts.

    Attributes:
        ready: waiting to be delivered now.
        in_flight: delivered to a consumer and not yet settled.
        delayed: waiting for their ``not_before`` time.
        dead: in the queue's dead letters.
    """

    ready: int = 0
    in_flight: int = 0
    delayed: int = 0
    dead: int = 0


@attrs.frozen(kw_only=True)
class DeadLetter:
    """A message moved out of circulation, with why.

    Attributes:
        id: Broker-assigned id of the dead letter (used to replay or delete it), unique
            among the dead letters of its queue; not the message id.
        queue: The queue the message came from (and is replayed to).
        body: The message body, unchanged.
        headers: The message headers, unchanged.
        reason: Why it was dead-lettered, readable by an operator.
        delivery_count: How many times it had been delivered.
        dead_at: Aware-UTC time it was dead-lettered.
    """

    id: str
    queue: str
    body: bytes
    headers: Mapping[str, str]
    reason: str
    delivery_count: int
    dead_at: datetime


@runtime_checkable
class Delivery(Protocol):
    """One message handed to one consumer, until it is settled.

    Exactly one settle operation takes effect per delivery: ``ack``, ``nack``, ``retry`` or
    ``dead_letter``. A second settle is harmless and does nothing (``dead_letter`` after
    ``ack`` is the exception: it records a copy, which at-most-once work needs). Settling
    after the owning consumer was closed raises :class:`~chicory.errors.DeliveryStateError`
    unless the delivery was already settled. Settling after the lease was lost does nothing
    at all (see "Leases" in the module docstring).
    """

    @property
    def message_id(self) -> str:
        """Broker-assigned id of the message, stable across redeliveries."""
        ...

    @property
    def queue(self) -> str:
        """The queue the message was consumed from."""
        ...

    @property
    def body(self) -> bytes:
        """The message body, exactly as published."""
        ...

    @property
    def headers(self) -> Mapping[str, str]:
        """The message headers, exactly as published."""
        ...

    @property
    def delivery_count(self) -> int:
        """How many times this message has been delivered, this one included (>= 1)."""
        ...

    async def ack(self) -> None:
        """Remove the message for good.

        Raises:
            DeliveryStateError: the consumer was closed before the ack.
            BrokerConnectionError: the broker could not be reached; the ack did not happen.
        """
        ...

    async def nack(self, *, requeue: bool = True, delay: float | None = None) -> None:
        """Give the message back (``requeue=True``) or drop it (``requeue=False``).

        A requeued message goes to the back of its queue: behind every message that is ready
        when it is requeued (and, with ``delay``, behind those ready when the delay ends).
        It keeps its message id; its next delivery counts one more.

        Args:
            requeue: Put the message back to be delivered again.
            delay: Seconds to hold it back first (needs ``delayed_delivery``).
        """
        ...

    async def retry(
        self, body: bytes, headers: Mapping[str, str], *, not_before: datetime | None
    ) -> None:
        """Publish a replacement message on the same queue and ack this one.

        Brokers declaring ``atomic_retry`` do both in one atomic step; others publish first,
        then ack, so a crash in between duplicates rather than loses. The replacement is a new
        message (new id, delivery count starting again at 1). After a lost lease nothing is
        published: the message's new holder runs it.
        """
        ...

    async def extend_lease(self, seconds: float | None = None) -> None:
        """Keep the message from being redelivered for ``seconds`` (default: the lease time).

        The lease then ends ``seconds`` after the renewal reached the broker, however late in
        the old lease it came (a broker may cap ``seconds`` at its ``lease_seconds``).
        Brokers without ``lease_renewal`` accept the call and do nothing.
        """
        ...

    async def dead_letter(self, reason: str) -> None:
        """Move the message to its queue's dead letters with ``reason``, settling it.

        If the delivery was already acked, a copy is recorded as a dead letter.
        """
        ...


@runtime_checkable
class Consumer(Protocol):
    """A subscription to one or more queues, opened by :meth:`Broker.consume`.

    Closing a consumer hands back every delivery it holds that is not settled: they become
    ready again at once (not after a lease timeout).
    """

    async def fetch(self, max_count: int, timeout: float) -> Sequence[Delivery]:
        """Return up to ``max_count`` ready deliveries, waiting up to ``timeout`` seconds.

        Returns an empty sequence on timeout. Never returns a delayed message before its
        time. With ``fifo``, the ready messages of one queue come in the order they became
        ready. Cancellation-safe: a cancelled fetch loses nothing (anything it had claimed
        is handed back or redelivered after its lease).

        Never returns more than the free prefetch room. With no room free, it waits like a
        fetch on an empty queue: room freed while it waits (a settle, a lost lease) is
        filled before it returns, and it returns nothing if none is freed in time. A fetch
        waiting when the consumer is closed returns an empty sequence.

        Raises:
            BrokerError: the consumer was closed (by :meth:`close` or by its broker's
                ``close()``) before the call; a closed consumer never silently returns
                nothing, which would make a fetch loop spin.
        """
        ...

    async def ack_many(self, deliveries: Sequence[Delivery]) -> Sequence[Delivery] | None:
        """Ack several deliveries of this consumer in as few round trips as possible.

        Returns:
            The deliveries it could not ack because their lease had expired: the broker may
            hand them out again, or did already. Empty (``None`` is read as empty) when
            every delivery was acked or had been settled before. An at-most-once task whose
            delivery is listed here is not run, so a broker with ``lease_renewal`` must list
            them: otherwise a worker that lost a lease runs a task another worker runs too.

        Raises:
            DeliveryStateError: a delivery belongs to another consumer, or was handed back
                by closing this one.
            BrokerConnectionError: the broker could not be reached; nothing was acked.
        """
        ...

    async def extend_leases(self, deliveries: Sequence[Delivery]) -> None:
        """Renew the leases of several held deliveries in as few round trips as possible."""
        ...

    async def close(self) -> None:
        """Stop consuming and hand back unsettled deliveries. Idempotent."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


@runtime_checkable
class Broker(Protocol):
    """A message store Chicory plugs into: opaque bodies and headers in named queues.

    The lifecycle, the batching contract and the cancellation rules that apply to every
    method are described with the module (:mod:`chicory.broker`).
    """

    @property
    def capabilities(self) -> Capabilities:
        """What this broker can do."""
        ...

    async def connect(self) -> None:
        """Open connections. Idempotent; called by ``__aenter__``.

        Raises:
            BrokerConnectionError: the broker cannot be reached.
        """
        ...

    async def close(self) -> None:
        """Close connections and every consumer. Idempotent and cancellation-safe."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def publish(
        self,
        queue: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        not_before: datetime | None = None,
    ) -> str:
        """Enqueue one message and return its message id.

        Raises:
            CapabilityError: ``not_before`` given but delayed delivery is not supported.
            MessageTooLargeError: the body exceeds ``max_body_bytes``.
            BrokerConnectionError: the broker could not be reached.
        """
        ...

    async def publish_many(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Enqueue many messages in as few round trips as possible; return their ids in order."""
        ...

    def consume(self, queues: Sequence[str], *, prefetch: int) -> Consumer:
        """Open a consumer on ``queues``; ``prefetch`` bounds how many it may hold at once."""
        ...

    async def counts(self, queue: str) -> QueueCounts:
        """Return the current counts of ``queue``."""
        ...

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """List up to ``limit`` dead letters of ``queue``, oldest first."""
        ...

    async def replay_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Put a dead letter back on its queue (same body and headers). False if unknown.

        The replayed message is a new message: a new message id, a delivery count that
        starts again at 1 (so ``max_deliveries`` does not bury it at once), at the back of
        the queue. The dead letter is gone; replaying it again returns False.
        """
        ...

    async def delete_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Delete one dead letter. False if unknown."""
        ...

    async def purge_dead_letters(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; return how many were deleted."""
        ...


@runtime_checkable
class QueueDeleter(Protocol):
    """Optional: a broker that can delete a queue and everything in it.

    A broker implements :meth:`delete_queue` and declares ``delete_queue=True``; call it
    through :func:`delete_queue`, which raises :class:`~chicory.errors.CapabilityError` for
    any other broker. The conformance suite uses it to remove every queue a test created.
    """

    async def delete_queue(self, queue: str) -> None:
        """Delete ``queue``: its ready, delayed, in-flight and dead messages, and whatever
        else the broker keeps for it. Other queues are untouched.

        Every consumer of the queue must be closed first (what an open one sees is
        unspecified). Publishing to the queue afterwards starts a new, empty queue.

        Raises:
            BrokerConnectionError: the broker could not be reached.
        """
        ...


async def delete_queue(broker: Broker, queue: str) -> None:
    """Delete ``queue`` and everything in it on a broker declaring ``delete_queue``.

    Raises:
        CapabilityError: the broker does not declare (or implement) ``delete_queue``.
    """
    if not broker.capabilities.delete_queue or not isinstance(broker, QueueDeleter):
        raise CapabilityError(
            f"{type(broker).__name__} cannot delete queues (it does not declare the "
            "'delete_queue' capability); remove the queue with the broker's own tools"
        )
    await broker.delete_queue(queue)
