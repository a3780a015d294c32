"""Consumers of the PostgreSQL broker: claiming, waiting, renewing and handing back.

A fetch claims up to its free prefetch room in one statement (``FOR UPDATE SKIP LOCKED``, see
:mod:`chicory_postgres.statements`); when nothing is ready it sleeps until a NOTIFY on one of
its queues, a settle of its own that frees room, the next delay or lease end in its queues, or
``poll_interval`` (the fallback when notifications are off or the LISTEN connection is down).

Each claim gives a message a new ``token``; every settle and renewal names the token, so one
that comes after the lease ran out and another consumer claimed the message changes nothing,
and :meth:`PostgresConsumer.ack_many` reports it. A delivery and its settles are in
:mod:`chicory_postgres.delivery` (:class:`PostgresDelivery` is importable from here too).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio

from chicory.broker import Delivery
from chicory.errors import BrokerError, DeliveryStateError
from chicory_postgres.delivery import PostgresDelivery
from chicory_postgres.inspect import trim_dead_letters

if TYPE_CHECKING:
    from chicory_postgres.broker import PostgresBroker

__all__ = ["PostgresConsumer", "PostgresDelivery"]

_MIN_SLEEP = 0.002


class PostgresConsumer:
    """A subscription to one or more queues, holding at most ``prefetch`` deliveries."""

    def __init__(self, broker: PostgresBroker, queues: Sequence[str], prefetch: int) -> None:
        if not queues:
            raise ValueError("consume() needs at least one queue")
        self.broker = broker
        self.closed = False
        self._queues = list(dict.fromkeys(queues))
        self._prefetch = max(1, prefetch)
        self._held: dict[uuid.UUID, PostgresDelivery] = {}
        self._events: set[anyio.Event] = set()
        self._claim_sql = broker.sql.claim(len(self._queues))
        self._registered = False
        self._id = uuid.uuid4()
        self._present_until = 0.0
        self._trim_due = time.monotonic() + broker.settings.prune_interval
        settings = broker.settings
        self._presence = max(settings.lease_seconds, 3 * settings.poll_interval)

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"holding {len(self._held)}"
        return f"<PostgresConsumer {self._queues} prefetch={self._prefetch} {state}>"

    @property
    def queues(self) -> list[str]:
        """The queues consumed."""
        return self._queues

    def forget(self, delivery: PostgresDelivery) -> None:
        """Stop counting a settled delivery against the prefetch; wake a waiting fetch."""
        if self._held.pop(delivery.id, None) is not None:
            self.wake()

    def wake(self) -> None:
        """Wake every fetch of this consumer that is waiting."""
        for event in self._events:
            event.set()

    def _room(self) -> int:
        now = time.monotonic()
        return self._prefetch - sum(1 for d in self._held.values() if d.leased_locally(now))

    async def fetch(self, max_count: int, timeout: float) -> Sequence[PostgresDelivery]:
        """Return up to ``max_count`` ready deliveries, waiting up to ``timeout`` seconds.

        Never more than the free prefetch room; with none free it waits for a settle or a
        lease running out, like a fetch on an empty queue. Cancellation-safe: a claim is
        shielded and what it got is handed back if the fetch was cancelled meanwhile.

        Raises:
            BrokerError: the consumer is closed.
            BrokerConnectionError: the server could not be reached.
        """
        if self.closed:
            raise BrokerError("this PostgreSQL consumer is closed; open a new one with consume()")
        if max_count < 1:
            return []
        if not self._registered:
            await self.broker.register_queues(self._queues)
            self._registered = True
        end = anyio.current_time() + timeout
        while True:
            await self._show_presence()
            event = anyio.Event()
            self._events.add(event)
            self.broker.add_waiter(self._queues, event)
            try:
                room = min(max_count, self._room())
                claimed = await self._claim(room) if room > 0 else []
                left = end - anyio.current_time()
                if claimed or left <= 0 or self.closed:
                    return claimed
                wait = min(left, self.broker.settings.poll_interval)
                if room > 0:
                    due = await self.broker.next_due(self._queues)
                    if due is not None:
                        wait = min(wait, max(due, _MIN_SLEEP))
                else:
                    ends = [d._deadline for d in self._held.values() if not d.settled]
                    if ends:
                        wait = min(wait, max(min(ends) - time.monotonic(), _MIN_SLEEP))
                with anyio.move_on_after(wait):
                    await event.wait()
            finally:
                self._events.discard(event)
                self.broker.remove_waiter(self._queues, event)
            if self._is_closed():
                return []

    async def _show_presence(self) -> None:
        """Renew this consumer's presence on its queues when a third of it is gone."""
        now = time.monotonic()
        if now < self._present_until - 2 * self._presence / 3:
            return
        await self.broker.execute(
            self.broker.sql.present,
            {"queues": self._queues, "consumer": self._id, "ttl": self._presence},
            doing="recording a consumer",
        )
        self._present_until = now + self._presence
        if now >= self._trim_due:  # dead letters over the limits are dropped from time to time
            self._trim_due = now + self.broker.settings.prune_interval
            for queue in self._queues:
                await trim_dead_letters(self.broker, queue)

    def _is_closed(self) -> bool:
        return self.closed

    async def _claim(self, room: int) -> list[PostgresDelivery]:
        params: dict[str, Any] = {
            "queues": self._queues,
            "limit": room,
            "lease": self.broker.settings.lease_seconds,
            "max_deliveries": self.broker.settings.max_deliveries,
        }
        for i, queue in enumerate(self._queues):
            params[f"q{i}"] = queue
        with anyio.CancelScope(shield=True):
            rows = await self.broker.fetch_rows(self._claim_sql, params, doing="claiming messages")
        rows.sort(key=lambda row: (-row[8], row[6], row[7]))  # priority, run_at, seq
        deadline = time.monotonic() + self.broker.settings.lease_seconds
        deliveries = [PostgresDelivery(self, row, deadline) for row in rows]
        for delivery in deliveries:
            self._held[delivery.id] = delivery
        try:
            await anyio.lowlevel.checkpoint_if_cancelled()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._release(deliveries)
            raise
        return deliveries

    def _own(self, deliveries: Sequence[Delivery]) -> list[PostgresDelivery]:
        owned = [d for d in deliveries if isinstance(d, PostgresDelivery) and d.consumer is self]
        if len(owned) != len(deliveries):
            raise DeliveryStateError(
                "only deliveries fetched by this consumer can be settled here; settle the "
                "others with the consumer that fetched them"
            )
        return owned

    async def ack_many(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Ack several deliveries in one statement.

        Returns:
            Those not acked because their lease had run out and another consumer claimed
            the message (or was free to).

        Raises:
            DeliveryStateError: a delivery was fetched by another consumer, or handed back
                by closing this one.
            BrokerConnectionError: the server could not be reached.
        """
        owned = [d for d in self._own(deliveries) if d.mark_settled(acked=True)]
        if not owned:
            return []
        rows = await self.broker.fetch_rows(
            self.broker.sql.ack,
            {"ids": [d.id for d in owned], "tokens": [d.token for d in owned]},
            doing="acking messages",
        )
        done = {row[0] for row in rows}
        return [d for d in owned if d.id not in done]

    async def extend_leases(self, deliveries: Sequence[Delivery]) -> None:
        """Renew the leases of several held deliveries in one statement.

        Raises:
            DeliveryStateError: a delivery was fetched by another consumer.
        """
        await self.renew([d for d in self._own(deliveries) if not d.settled], None)

    async def renew(self, deliveries: Sequence[PostgresDelivery], seconds: float | None) -> None:
        """Renew ``deliveries`` for ``seconds`` (capped at the lease; default the lease)."""
        if not deliveries:
            return
        lease = self.broker.settings.lease_seconds
        seconds = lease if seconds is None else min(max(seconds, 0.0), lease)
        await self.broker.execute(
            self.broker.sql.renew,
            {
                "ids": [d.id for d in deliveries],
                "tokens": [d.token for d in deliveries],
                "lease": seconds,
            },
            doing="renewing leases",
        )
        for delivery in deliveries:
            delivery.renewed(seconds)

    async def _release(self, deliveries: Sequence[PostgresDelivery]) -> None:
        if deliveries:
            await self.broker.execute(
                self.broker.sql.release,
                {"ids": [d.id for d in deliveries], "tokens": [d.token for d in deliveries]},
                doing="handing messages back",
            )
            for delivery in deliveries:
                self._held.pop(delivery.id, None)
                self.broker.wake_local(delivery.queue)

    async def close(self) -> None:
        """Stop consuming and hand back every unsettled delivery now. Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.wake()
        self.broker.forget(self)
        held = list(self._held.values())
        self._held.clear()
        with anyio.CancelScope(shield=True):
            # Unreachable server: the leases run out and the messages are redelivered.
            with contextlib.suppress(BrokerError):
                await self._release(held)
            if self._present_until:
                with contextlib.suppress(BrokerError):
                    await self.broker.execute(
                        self.broker.sql.absent, {"consumer": self._id}, doing="closing"
                    )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
