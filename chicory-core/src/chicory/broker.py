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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

import attrs

__all__ = [
    "Broker",
    "Capabilities",
    "Consumer",
    "DeadLetter",
    "Delivery",
    "OutgoingMessage",
    "QueueCounts",
]


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
        priorities: the broker honours a ``priority`` header.
        atomic_retry: ``Delivery.retry`` publishes the replacement and acks in one step.
        shared: several processes (or machines) can share the broker's queues.
        max_body_bytes: the largest body the broker accepts, or ``None`` for no limit of
            its own.
        lease_seconds: how long a held delivery stays leased without renewal, when the
            broker has leases; workers renew every third of it unless told otherwise.
        inspection: the broker implements the operators' operations of
            :class:`chicory.inspection.InspectableBroker` (list queues, queue stats, dead
            letters by page, one dead letter, requeue a dead letter with a new body).
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
    inspection: bool = False


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
        id: Broker-assigned id of the dead letter (used to replay or delete it).
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
    unless the delivery was already settled.
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
        then ack, so a crash in between duplicates rather than loses.
        """
        ...

    async def extend_lease(self, seconds: float | None = None) -> None:
        """Keep the message from being redelivered for ``seconds`` (default: the lease time).

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
        time. Cancellation-safe: a cancelled fetch loses nothing (anything it had claimed
        is handed back or redelivered after its lease).
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
        """Put a dead letter back on its queue (same body and headers). False if unknown."""
        ...

    async def delete_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Delete one dead letter. False if unknown."""
        ...

    async def purge_dead_letters(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; return how many were deleted."""
        ...
