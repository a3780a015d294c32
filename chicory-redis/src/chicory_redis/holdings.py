"""What one Redis consumer holds: its unsettled deliveries, their leases and their states.

:class:`Holdings` is the bookkeeping half of a consumer's :class:`~chicory_redis.ledger.Ledger`
(which adds the settle scripts): the deliveries by ``(stream, entry id)``, whose count bounds
the prefetch; which of them lapsed (their lease ran out unrenewed); and the rules for moving a
delivery out of them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from chicory.errors import DeliveryStateError
from chicory_redis.delivery import DeliveryState, RedisDelivery
from chicory_redis.keys import QueueKeys

if TYPE_CHECKING:
    from chicory_redis.broker import RedisBroker

__all__ = ["Holdings"]

log = logging.getLogger("chicory.redis")


class Holdings:
    """The deliveries one consumer holds (see the module docstring).

    Args:
        broker: The connected broker.
        name: The consumer's name in the consumer groups.
        queues: The keys of the consumer's queues.
    """

    def __init__(self, broker: RedisBroker, name: str, queues: Sequence[QueueKeys]) -> None:
        self._broker = broker
        self._settings = broker.settings
        self.name = name
        self._by_stream = {k.stream: k for k in queues}
        self.held: dict[tuple[str, str], RedisDelivery] = {}
        self.lapsed: dict[tuple[str, str], RedisDelivery] = {}
        self.closed = False
        self._admitted = 0  # deliveries admitted so far: the next one's ordinal
        self.freed = asyncio.Event()  # set whenever a held delivery stops being held
        self.new_levels: list[QueueKeys] = []
        """Priority levels this consumer requeued a message to (a retry at another priority):
        the consumer reads them from its next fetch on."""
        self.soonest_due: float | None = None
        """The soonest due time (s since the epoch) of a message this consumer delayed since
        its last move of due messages: its next move comes no later (see ``requeue``)."""

    def add_streams(self, keys: Sequence[QueueKeys]) -> None:
        """Settle deliveries from these streams too (a queue's priority levels)."""
        for k in keys:
            self._by_stream[k.stream] = k

    @property
    def max_body_bytes(self) -> int:
        """The broker's body size limit."""
        return self._settings.max_body_bytes

    def now(self) -> float:
        """The broker clock's time (seconds since the epoch)."""
        return self._broker.clock.time()

    @staticmethod
    def due_ms(at: float) -> int:
        """Milliseconds score for a due time, rounded up so nothing is delivered early."""
        return math.ceil(at * 1000)

    def expire(self, stream: str, entry_id: str) -> None:
        """Forget a held delivery whose entry this consumer reclaimed again (lease lapsed)."""
        key = (stream, entry_id)
        old = self.held.pop(key, None) or self.lapsed.pop(key, None)
        if old is not None:
            old.state = DeliveryState.EXPIRED

    def sweep(self) -> None:
        """Stop counting deliveries whose lease lapsed unrenewed against the prefetch.

        Their entries may now be reclaimed by any consumer (this one included), so keeping
        their room would only stall this consumer, for example when their settle failed
        while Redis was down. They can still be settled while this consumer owns them.
        """
        now = time.monotonic()
        lapsed = [key for key, d in self.held.items() if d.deadline <= now]
        for key in lapsed:
            self.lapsed[key] = self.held.pop(key)
            self.freed.set()
        if lapsed:
            log.warning(
                "%d held message(s) went %.1f s without a settle or a lease renewal; they no "
                "longer count against the prefetch and will be redelivered",
                len(lapsed),
                self._settings.lease_seconds,
            )

    def next_lapse(self) -> float | None:
        """The ``time.monotonic()`` at which the next held lease lapses, if any is held."""
        return min((d.deadline for d in self.held.values()), default=None)

    def all_held(self) -> list[RedisDelivery]:
        """Every unsettled delivery, lapsed ones included, in fetch order."""
        return [*self.lapsed.values(), *self.held.values()]

    def may_settle(self, delivery: RedisDelivery) -> bool:
        """True if ``delivery`` is held; False if settling it must do nothing.

        Raises:
            DeliveryStateError: the consumer was closed and handed the delivery back.
        """
        state = delivery.state
        if state is DeliveryState.HANDED_BACK:
            raise DeliveryStateError(
                f"message {delivery.message_id} cannot be settled: its consumer was closed "
                "and handed it back, so it will be delivered again"
            )
        return state is DeliveryState.HELD

    def release(self, delivery: RedisDelivery, state: DeliveryState) -> None:
        """Stop holding ``delivery``; it moves to ``state`` unless it was settled already."""
        self.release_many((delivery,), state)

    def release_many(self, deliveries: Iterable[RedisDelivery], state: DeliveryState) -> None:
        """:meth:`release` of several deliveries in one pass (an acked batch: once per task)."""
        held, lapsed, freed = self.held, self.lapsed, False
        for d in deliveries:
            if d.state is DeliveryState.HELD:
                d.state = state
            key = d.key
            if held.get(key) is d:
                del held[key]
                freed = True
            elif lapsed.get(key) is d:
                del lapsed[key]
        if freed:
            self.freed.set()

    def own(self, delivery: object) -> RedisDelivery:
        """Return ``delivery`` if this consumer fetched it.

        Raises:
            DeliveryStateError: it comes from another consumer or broker.
        """
        if isinstance(delivery, RedisDelivery) and delivery.ledger is self:
            return delivery
        raise DeliveryStateError(f"{delivery!r} was not fetched by this consumer; settle it there")
