"""The Redis broker's :class:`~chicory.broker.Delivery`: one stream entry held by one ledger.

Settling rules (the same as the memory reference broker's):

* The first of ``ack``, ``nack``, ``retry`` and ``dead_letter`` takes effect; later ones do
  nothing, except ``dead_letter`` after ``ack``, which records a copy of the message.
* Settling after the consumer was closed raises :class:`~chicory.errors.DeliveryStateError`
  (the entry was handed back), unless the delivery had been settled before.
* Once another consumer reclaimed the entry (the lease expired), settling does nothing: each
  settle script checks the entry is still pending for this ledger.
* ``extend_lease`` on anything that is not held does nothing.

Every settle is one atomic Lua script (:mod:`chicory_redis.scripts`) in one round trip.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from chicory.clock import to_epoch
from chicory.errors import MessageTooLargeError
from chicory_redis.entries import StoredMessage, encode_headers, new_message_id
from chicory_redis.keys import QueueKeys
from chicory_redis.levels import level_of

if TYPE_CHECKING:
    from chicory_redis.ledger import Ledger

__all__ = ["DeliveryState", "RedisDelivery"]


class DeliveryState(enum.Enum):
    """Where one delivery stands."""

    HELD = "held"
    ACKED = "acked"
    SETTLED = "settled"
    EXPIRED = "expired"
    HANDED_BACK = "handed back"


class RedisDelivery:
    """One message handed to one Redis ledger. See the module docstring for the rules."""

    __slots__ = (
        "_ledger",
        "body",
        "count",
        "deadline",
        "headers",
        "key",
        "keys",
        "message",
        "ordinal",
        "state",
    )

    body: bytes
    """The message body, exactly as published."""
    headers: Mapping[str, str]
    """The message headers, exactly as published."""

    def __init__(
        self,
        ledger: Ledger,
        keys: QueueKeys,
        message: StoredMessage,
        count: int,
        deadline: float,
        ordinal: int,
    ) -> None:
        self._ledger = ledger
        self.keys = keys
        self.message = message
        self.body = message.body  # plain attributes, not properties: read once per task
        self.headers = message.headers
        self.count = count
        self.state = DeliveryState.HELD
        self.deadline = deadline  # time.monotonic() at which the lease lapses unless renewed
        self.key = (keys.stream, message.entry_id)  # where the ledger files it
        self.ordinal = ordinal  # its place in the order its ledger admitted deliveries

    def __repr__(self) -> str:
        return (
            f"<RedisDelivery {self.message.message_id} queue={self.keys.queue!r} "
            f"entry={self.message.entry_id} count={self.count} {self.state.value}>"
        )

    @property
    def ledger(self) -> Ledger:
        """The ledger of the consumer holding this delivery."""
        return self._ledger

    @property
    def message_id(self) -> str:
        """Broker-assigned id of the message, stable across redeliveries."""
        return self.message.message_id

    @property
    def entry_id(self) -> str:
        """The stream entry id (changes when the message is requeued)."""
        return self.message.entry_id

    @property
    def queue(self) -> str:
        """The queue the message was consumed from."""
        return self.keys.queue

    @property
    def delivery_count(self) -> int:
        """How many times the message has been delivered, this delivery included."""
        return self.count

    async def ack(self) -> None:
        """Remove the message for good (``XACK`` + ``XDEL``, atomically).

        Raises:
            DeliveryStateError: the consumer was closed before the delivery was settled.
            BrokerConnectionError: Redis could not be reached; the ack did not happen.
        """
        await self._ledger.ack_many([self])

    async def nack(self, *, requeue: bool = True, delay: float | None = None) -> None:
        """Requeue the message (at the back of the queue, or after ``delay`` s) or drop it.

        The delivery count is carried over; with ``max_deliveries`` set, a message that was
        delivered that many times is dead-lettered instead of requeued.

        Args:
            requeue: Put the message back to be delivered again; ``False`` drops it.
            delay: Seconds to hold it back first.

        Raises:
            ValueError: ``delay`` is negative.
            DeliveryStateError: the consumer was closed before the delivery was settled.
            BrokerConnectionError: Redis could not be reached; nothing happened.
        """
        if delay is not None and delay < 0:
            raise ValueError(f"delay must not be negative, got {delay}")
        ledger = self._ledger
        if not ledger.may_settle(self):
            return
        due = "-"
        if requeue:
            due = "" if not delay else str(ledger.due_ms(ledger.now() + delay))
        message = self.message
        await ledger.requeue(
            self,
            due=due,
            message_id=message.message_id,
            prior=self.count,
            raw_headers=message.raw_headers,
            body=message.body,
            check_limit=True,
        )

    async def retry(
        self, body: bytes, headers: Mapping[str, str], *, not_before: datetime | None
    ) -> None:
        """Publish a replacement on the same queue and ack this delivery, in one atomic step.

        The replacement is a new message (new id, delivery count starting again at 1),
        delayed until ``not_before`` if that is in the future, served at the priority of its
        ``headers``.

        Raises:
            ValueError: ``not_before`` is naive.
            MessageTooLargeError: ``body`` is over the broker's ``max_body_bytes``.
            DeliveryStateError: the consumer was closed before the delivery was settled.
            BrokerConnectionError: Redis could not be reached; nothing happened.
        """
        ledger = self._ledger
        limit = ledger.max_body_bytes
        if len(body) > limit:
            raise MessageTooLargeError(
                f"retry body is {len(body)} bytes; the Redis broker accepts at most {limit} "
                "(raise max_body_bytes or send less data)"
            )
        due = ""
        if not_before is not None:
            at = to_epoch(not_before)
            if at > ledger.now():
                due = str(ledger.due_ms(at))
        if not ledger.may_settle(self):
            return
        level = level_of(headers) if headers else 0
        await ledger.requeue(
            self,
            due=due,
            message_id=new_message_id(),
            prior=0,
            raw_headers=encode_headers(headers),
            body=body,
            check_limit=False,
            target=None if level == self.keys.level else self.keys.at_level(level),
        )

    async def extend_lease(self, seconds: float | None = None) -> None:
        """Reset the idle time of the entry, keeping it for ``lease_seconds`` more.

        Redis measures leases as idle time, so a lease is always ``lease_seconds`` long from
        the last renewal: ``seconds`` above that is capped (renew again before it ends).
        Does nothing if the delivery is no longer held.

        Raises:
            ValueError: ``seconds`` is not positive.
        """
        if seconds is not None and seconds <= 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        if self.state is DeliveryState.HELD:
            await self._ledger.extend_leases([self])

    async def dead_letter(self, reason: str) -> None:
        """Move the message to its queue's dead letters; after an ack, record a copy.

        Raises:
            DeliveryStateError: the consumer was closed before the delivery was settled.
            BrokerConnectionError: Redis could not be reached; nothing happened.
        """
        await self._ledger.bury(self, reason)
