"""The memory broker's :class:`~chicory.broker.Consumer`: fetching, waiting and batch settling.

What a consumer holds is stored in its :class:`chicory_memory.store.Subscription` (so the
store can expire leases and the broker can close it). This module adds the waiting: a fetch
that finds nothing registers a fresh :class:`anyio.Event` with each of its queues and with
its subscription, then sleeps until a publish, a requeue, a hand-back, a settle that frees
prefetch room or a close sets it. The sleep is bounded by the earliest delayed message or
lease deadline on the clock, so due messages are picked up without polling.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Self

import anyio

from chicory.broker import Delivery
from chicory.clock import Clock
from chicory.errors import BrokerError, DeliveryStateError
from chicory_memory.delivery import MemoryDelivery, unwrap
from chicory_memory.model import Held, Subscription
from chicory_memory.store import MemoryStore

__all__ = ["MemoryConsumer"]

# Shortest sleep when something falls due on the clock, so the real clock can catch up.
_MIN_SLEEP = 0.001


class MemoryConsumer:
    """A subscription to one or more memory queues; see :class:`chicory.broker.Consumer`.

    Several queues are served round-robin. The consumer never holds more than ``prefetch``
    unsettled deliveries. Closing it hands every unsettled delivery back to the front of its
    queue, in the order it was fetched.
    """

    def __init__(self, store: MemoryStore, clock: Clock, subscription: Subscription) -> None:
        self._store = store
        self._clock = clock
        self._sub = subscription

    def __repr__(self) -> str:
        names = ", ".join(q.name for q in self._sub.queues)
        state = "closed" if self._sub.closed else f"holding {len(self._sub.held)}"
        return f"<MemoryConsumer [{names}] prefetch={self._sub.prefetch} {state}>"

    @property
    def closed(self) -> bool:
        """Whether the consumer was closed (by itself or by its broker)."""
        return self._sub.closed

    @property
    def held(self) -> int:
        """How many unsettled deliveries the consumer holds."""
        return len(self._sub.held)

    async def fetch(self, max_count: int, timeout: float) -> Sequence[MemoryDelivery]:
        """Return up to ``max_count`` ready deliveries, waiting up to ``timeout`` seconds.

        Never returns more than the free prefetch room. Returns an empty list on timeout, or
        if the consumer is closed while waiting. Cancellation-safe: nothing is claimed until
        the wait is over, and claiming is atomic.

        Raises:
            BrokerError: the consumer was already closed.
        """
        sub, store, clock = self._sub, self._store, self._clock
        if sub.closed:
            raise BrokerError("this memory consumer is closed; open a new one with consume()")
        if max_count < 1:
            return []
        claimed = store.claim(sub, max_count, clock.time())
        if claimed or timeout <= 0:
            return self._wrap(claimed)
        end = anyio.current_time() + timeout
        while True:
            event = anyio.Event()
            for queue in sub.queues:
                queue.waiters.add(event)
            sub.waiters.add(event)
            wait = end - anyio.current_time()
            due = store.next_deadline(sub.queues)
            if due is not None:
                wait = min(wait, max(due - clock.time(), _MIN_SLEEP))
            try:
                with anyio.move_on_after(wait):
                    await event.wait()
            finally:
                for queue in sub.queues:
                    queue.waiters.discard(event)
                sub.waiters.discard(event)
            if not sub.is_open():
                return []
            claimed = store.claim(sub, max_count, clock.time())
            if claimed or anyio.current_time() >= end:
                return self._wrap(claimed)

    def _wrap(self, claimed: list[Held]) -> list[MemoryDelivery]:
        store, clock = self._store, self._clock
        return [MemoryDelivery(store, clock, held) for held in claimed]

    def _own(self, deliveries: Sequence[object]) -> list[Held]:
        owned = [unwrap(delivery, self._store) for delivery in deliveries]
        for held in owned:
            if held.subscription is not self._sub:
                raise DeliveryStateError(
                    f"message {held.message_id} was fetched by another consumer; settle it there"
                )
        return owned

    async def ack_many(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Ack several deliveries of this consumer at once.

        Returns:
            Those it could not ack because their lease had expired (their messages are
            ready again, or were delivered again).

        Raises:
            DeliveryStateError: a delivery belongs to another consumer (nothing is acked),
                or the consumer was closed before they were settled.
        """
        helds = self._own(deliveries)
        lost = self._store.ack_many(helds)
        if not lost:
            return []
        return [d for d, held in zip(deliveries, helds, strict=True) if held in lost]

    async def extend_leases(self, deliveries: Sequence[object]) -> None:
        """Renew the leases of several held deliveries by the broker's lease time.

        Raises:
            DeliveryStateError: a delivery belongs to another consumer (nothing is renewed).
        """
        store, now = self._store, self._clock.time()
        for held in self._own(deliveries):
            store.extend(held, None, now)

    async def sever(self) -> None:
        """Cut this consumer's session as a dropped connection would (for fault tests).

        With session-bound leases its unsettled deliveries go back to the front of their
        queues at once and become stale: settling them does nothing and :meth:`ack_many`
        reports them lost; the consumer itself goes on (reconnected). With timed leases
        nothing changes: its deliveries stay leased until settled or expired.
        """
        self._store.sever(self._sub, self._clock.time())

    async def close(self) -> None:
        """Stop consuming; hand unsettled deliveries back to the front of their queues now.

        Idempotent.
        """
        self._store.close_subscription(self._sub, self._clock.time())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
