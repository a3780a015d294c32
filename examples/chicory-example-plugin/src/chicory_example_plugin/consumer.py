"""Consumers and deliveries of the ``example://`` broker: thin handles on the :class:`Store`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio

from chicory.broker import Delivery
from chicory.clock import to_epoch
from chicory.errors import BrokerError, DeliveryStateError
from chicory_example_plugin.store import Claimed

if TYPE_CHECKING:
    from chicory_example_plugin.broker import ExampleBroker

__all__ = ["ExampleConsumer", "ExampleDelivery"]

POLL_SECONDS = 0.05
"""How often a waiting fetch looks at a database file other processes may write to."""


class ExampleDelivery:
    """One claimed message. The first settle takes effect; later ones do nothing."""

    def __init__(self, consumer: ExampleConsumer, claimed: Claimed) -> None:
        self.consumer = consumer
        self._consumer = consumer
        self._claimed = claimed
        self._settled = False
        self._acked = False

    @property
    def message_id(self) -> str:
        """Broker-assigned id of the message, stable across redeliveries."""
        return self._claimed.id

    @property
    def queue(self) -> str:
        """The queue the message was consumed from."""
        return self._claimed.queue

    @property
    def body(self) -> bytes:
        """The message body, exactly as published."""
        return self._claimed.body

    @property
    def headers(self) -> Mapping[str, str]:
        """The message headers, exactly as published."""
        return self._claimed.headers

    @property
    def delivery_count(self) -> int:
        """How many times the message has been delivered, this delivery included."""
        return self._claimed.delivery_count

    def _settle(self) -> bool:
        """Mark settled; False if it already was. Raises if the consumer closed first."""
        if self._settled:
            return False
        if self._consumer.closed:
            raise DeliveryStateError(
                f"message {self.message_id} was handed back when its consumer closed; "
                "it can no longer be settled"
            )
        self._settled = True
        return True

    async def ack(self) -> None:
        """Delete the message for good."""
        self.ack_now()

    def ack_now(self) -> bool:
        """Delete the message; False if its lease had expired and another claim took it
        over (then nothing is deleted)."""
        if not self._settle():
            return True
        self._acked = True
        acked = self._consumer.store.ack(self.message_id, self._claimed.token)
        self._consumer.broker.wake()  # prefetch room freed: a waiting fetch may claim
        return acked

    async def nack(self, *, requeue: bool = True, delay: float | None = None) -> None:
        """Put the message back (after ``delay`` seconds) or drop it."""
        if not self._settle():
            return
        store = self._consumer.store
        if requeue:
            store.requeue(self.message_id, self._claimed.token, time.time() + (delay or 0.0))
        else:
            store.ack(self.message_id, self._claimed.token)
        self._consumer.broker.wake()

    async def retry(
        self, body: bytes, headers: Mapping[str, str], *, not_before: datetime | None
    ) -> None:
        """Publish a replacement and delete this message, in one transaction."""
        if self._settle():
            due = to_epoch(not_before) if not_before is not None else time.time()
            self._consumer.store.replace(
                self.message_id, self._claimed.token, self.queue, body, headers, due
            )
            self._consumer.broker.wake()

    async def extend_lease(self, seconds: float | None = None) -> None:
        """Keep the message for ``seconds`` more (default: the broker's lease)."""
        if not self._settled:
            store = self._consumer.store
            until = time.time() + (seconds if seconds is not None else store.lease_seconds)
            store.extend(self.message_id, self._claimed.token, until)

    async def dead_letter(self, reason: str) -> None:
        """Move the message to the dead letters; after an ack, record a copy."""
        if self._acked:
            self._consumer.store.dead_letter(self._claimed, reason, time.time(), copy=True)
        elif self._settle():
            self._consumer.store.dead_letter(self._claimed, reason, time.time(), copy=False)
            self._consumer.broker.wake()


class ExampleConsumer:
    """A subscription to one or more queues, holding at most ``prefetch`` deliveries."""

    def __init__(self, broker: ExampleBroker, queues: Sequence[str], prefetch: int) -> None:
        self.broker = broker
        self.store = broker.store
        self.closed = False
        self._queues = list(queues)
        self._prefetch = prefetch
        self._id = uuid.uuid4().hex

    async def fetch(self, max_count: int, timeout: float) -> Sequence[ExampleDelivery]:
        """Return up to ``max_count`` ready deliveries, waiting up to ``timeout`` seconds.

        With the prefetch full it waits for a settle (every settle wakes waiting fetches)
        or a lapsing lease, like a fetch on an empty queue. Cancellation-safe: claiming
        happens without awaiting, after the wait.

        Raises:
            BrokerError: the consumer is closed.
        """
        if self.closed:
            raise BrokerError("this consumer is closed; open a new one with consume()")
        end = anyio.current_time() + timeout
        while True:
            claimed = self.store.claim(
                self._id, self._queues, max_count, self._prefetch, time.time()
            )
            left = end - anyio.current_time()
            if claimed or left <= 0 or self.closed:
                return [ExampleDelivery(self, c) for c in claimed]
            wait = left if not self.broker.shared else min(left, POLL_SECONDS)
            now = time.time()
            due = self.store.next_due(self._queues, now)
            if due is not None:
                wait = min(wait, max(due - now, 0.001))
            await self.broker.wait_for_change(wait)

    def _own(self, deliveries: Sequence[Delivery]) -> list[ExampleDelivery]:
        owned = [d for d in deliveries if isinstance(d, ExampleDelivery) and d.consumer is self]
        if len(owned) != len(deliveries):
            raise DeliveryStateError("only deliveries fetched by this consumer can be settled here")
        return owned

    async def ack_many(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Ack each delivery (one transaction each: this is an example, not a fast path).

        Returns:
            Those not acked because their lease had expired and another claim took them.

        Raises:
            DeliveryStateError: a delivery was fetched by another consumer.
        """
        return [d for d in self._own(deliveries) if not d.ack_now()]

    async def extend_leases(self, deliveries: Sequence[Delivery]) -> None:
        """Renew the lease of each delivery.

        Raises:
            DeliveryStateError: a delivery was fetched by another consumer.
        """
        for delivery in self._own(deliveries):
            await delivery.extend_lease()

    async def close(self) -> None:
        """Stop consuming and hand back every unsettled delivery now. Idempotent."""
        if not self.closed:
            self.closed = True
            self.broker.forget(self)
            self.store.release_consumer(self._id, time.time())
            self.broker.wake()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
