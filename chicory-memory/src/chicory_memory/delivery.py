"""The memory broker's :class:`~chicory.broker.Delivery`: a thin handle on a stored ``Held``.

A delivery stores nothing itself: its message and state live in
:class:`chicory_memory.store.Held`, and every method is one synchronous, atomic call into
:class:`chicory_memory.store.MemoryStore`.

Settling rules (the oracle for every other broker):

* The first of ``ack``, ``nack``, ``retry`` and ``dead_letter`` takes effect; later ones do
  nothing, except ``dead_letter`` after ``ack``, which records a copy of the message.
* Settling after the consumer was closed raises :class:`~chicory.errors.DeliveryStateError`
  (the message was handed back), unless the delivery had been settled before.
* Settling after the lease expired (consumer still open) does nothing: the message is already
  ready again, or delivered to someone else, and that copy is left alone.
* ``extend_lease`` on anything that is not held does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType

from chicory.clock import Clock, to_epoch
from chicory.errors import DeliveryStateError
from chicory_memory.model import BODY, HEADERS, DeliveryState, Held
from chicory_memory.store import MemoryStore

__all__ = ["MemoryDelivery"]

_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
"""The headers of every message published without any: one shared, immutable mapping."""


class MemoryDelivery:
    """One message handed to one memory consumer. See the module docstring for the rules."""

    __slots__ = ("_clock", "_held", "_store")

    def __init__(self, store: MemoryStore, clock: Clock, held: Held) -> None:
        self._store = store
        self._clock = clock
        self._held = held

    def __repr__(self) -> str:
        held = self._held
        return (
            f"<MemoryDelivery {held.message_id} queue={held.queue.name!r} "
            f"count={held.count} {held.state.value}>"
        )

    @property
    def message_id(self) -> str:
        """Broker-assigned id of the message, stable across redeliveries."""
        return self._held.message_id

    @property
    def queue(self) -> str:
        """The queue the message was consumed from."""
        return self._held.queue.name

    @property
    def body(self) -> bytes:
        """The message body, exactly as published."""
        return self._held.message[BODY]

    @property
    def headers(self) -> Mapping[str, str]:
        """The message headers, exactly as published (read-only when there are none)."""
        pairs = self._held.message[HEADERS]
        return dict(pairs) if pairs else _NO_HEADERS

    @property
    def delivery_count(self) -> int:
        """How many times the message has been delivered, this delivery included."""
        return self._held.count

    @property
    def state(self) -> DeliveryState:
        """Where this delivery stands (held, acked, settled, expired, handed back)."""
        return self._held.state

    @property
    def lease_deadline(self) -> float:
        """Clock time at which the lease ends, unless renewed."""
        return self._held.deadline

    async def ack(self) -> None:
        """Remove the message for good.

        Raises:
            DeliveryStateError: the consumer was closed before the delivery was settled.
        """
        self._store.ack(self._held)

    async def nack(self, *, requeue: bool = True, delay: float | None = None) -> None:
        """Requeue the message (at the back of the queue, or after ``delay`` s) or drop it.

        Args:
            requeue: Put the message back to be delivered again; ``False`` drops it.
            delay: Seconds to hold it back first.

        Raises:
            DeliveryStateError: the consumer was closed before the delivery was settled.
        """
        if delay is not None and delay < 0:
            raise ValueError(f"delay must not be negative, got {delay}")
        self._store.nack(self._held, requeue=requeue, delay=delay, now=self._clock.time())

    async def retry(
        self, body: bytes, headers: Mapping[str, str], *, not_before: datetime | None
    ) -> None:
        """Publish a replacement on the same queue and ack this delivery, in one atomic step.

        The replacement is a new message (new id, delivery count starting again at 1),
        delayed until ``not_before`` if that is in the future.

        Raises:
            ValueError: ``not_before`` is naive.
            MessageTooLargeError: ``body`` is over the broker's ``max_body_bytes``.
            DeliveryStateError: the consumer was closed before the delivery was settled.
        """
        due = to_epoch(not_before) if not_before is not None else None
        self._store.retry(self._held, body, headers, due, self._clock.time())

    async def extend_lease(self, seconds: float | None = None) -> None:
        """Move the lease deadline to now + ``seconds`` (default: the broker's lease time).

        Does nothing if the delivery is no longer held.
        """
        if seconds is not None and seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        self._store.extend(self._held, seconds, self._clock.time())

    async def dead_letter(self, reason: str) -> None:
        """Move the message to its queue's dead letters; after an ack, record a copy.

        Raises:
            DeliveryStateError: the consumer was closed before the delivery was settled.
        """
        self._store.dead_letter(self._held, reason, self._clock.time())


def unwrap(delivery: object, store: MemoryStore) -> Held:
    """Return the state behind ``delivery`` if it belongs to ``store``.

    Raises:
        DeliveryStateError: ``delivery`` comes from another broker.
    """
    if isinstance(delivery, MemoryDelivery) and delivery._store is store:
        return delivery._held
    raise DeliveryStateError(f"{delivery!r} is not a delivery of this memory broker")
