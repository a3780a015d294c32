"""Consumers and deliveries of the ``sqlite://`` broker.

A consumer keeps the deliveries it holds in memory (its prefetch room is counted there, lease
ends included, on the same host clock the database is judged by), so a fetch with no room
never touches the database. Every settle is one transaction keyed by ``(id, token)``: a
settle of a message another consumer claimed since (its lease lapsed) matches no row and
changes nothing.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Self

import anyio

from chicory.broker import Delivery
from chicory.clock import to_epoch
from chicory.errors import BrokerError, DeliveryStateError
from chicory_sqlite import admin
from chicory_sqlite.database import immediate
from chicory_sqlite.statements import Claimed, QueueStatements

if TYPE_CHECKING:
    from chicory_sqlite.broker import SqliteBroker

__all__ = ["SqliteConsumer", "SqliteDelivery"]

REGISTER_EVERY = admin.CONSUMER_STALE_SECONDS / 4
"""How often a fetching consumer refreshes its row in ``chicory_consumers``."""


class SqliteDelivery:
    """One claimed message. The first settle takes effect; later ones do nothing."""

    def __init__(self, consumer: SqliteConsumer, claimed: Claimed) -> None:
        self.consumer = consumer
        self.claimed = claimed
        self.lease_until = claimed.lease_until
        self.settled = False
        self.acked = False

    @property
    def message_id(self) -> str:
        """Broker-assigned id of the message, stable across redeliveries."""
        return self.claimed.id

    @property
    def queue(self) -> str:
        """The queue the message was consumed from."""
        return self.claimed.queue

    @property
    def body(self) -> bytes:
        """The message body, exactly as published."""
        return self.claimed.body

    @property
    def headers(self) -> Mapping[str, str]:
        """The message headers, exactly as published."""
        return self.claimed.headers

    @property
    def delivery_count(self) -> int:
        """How many times the message has been delivered, this delivery included."""
        return self.claimed.delivery_count

    @property
    def held(self) -> tuple[str, str]:
        """``(message id, claim token)``: what the settle statements match."""
        return (self.claimed.id, self.claimed.token)

    def settle_now(self) -> bool:
        """Mark settled; False if it already was.

        Raises:
            DeliveryStateError: its consumer was closed first (it handed the message back).
        """
        if self.settled:
            return False
        if self.consumer.closed:
            raise DeliveryStateError(
                f"message {self.message_id} was handed back when its consumer closed; "
                "it can no longer be settled"
            )
        self.settled = True
        self.consumer.held.pop(self.message_id, None)
        return True

    def unsettle(self) -> None:
        """Undo :meth:`settle_now` after the settle's transaction failed (nothing changed)."""
        self.settled = self.acked = False
        if not self.consumer.closed:
            self.consumer.held[self.message_id] = self

    async def _settle_with(self, write: Callable[[sqlite3.Connection], object]) -> None:
        try:
            await self.consumer.broker.database.write(write)
        except BaseException:
            self.unsettle()
            raise

    async def ack(self) -> None:
        """Delete the message for good (nothing, if its lease was lost)."""
        await self.consumer.ack_many([self])

    async def nack(self, *, requeue: bool = True, delay: float | None = None) -> None:
        """Put the message back at the back of its queue (after ``delay`` s), or drop it."""
        if not self.settle_now():
            return
        held = [self.held]
        if requeue:
            await self._settle_with(
                lambda conn: QueueStatements.release(conn, held, max(delay or 0.0, 0.0))
            )
        else:
            await self._settle_with(lambda conn: QueueStatements.ack(conn, held))

    async def retry(
        self, body: bytes, headers: Mapping[str, str], *, not_before: datetime | None
    ) -> None:
        """Publish a replacement and delete this message, in one transaction."""
        if not self.settle_now():
            return
        due = to_epoch(not_before) if not_before is not None else None
        text = json.dumps(dict(headers))
        await self._settle_with(
            lambda conn: QueueStatements.replace(conn, self.held, self.queue, body, text, due)
        )

    async def extend_lease(self, seconds: float | None = None) -> None:
        """Keep the message for ``seconds`` more (default, and at most: the broker's lease)."""
        if not self.settled:
            await self.consumer.extend_leases([self], seconds)

    async def dead_letter(self, reason: str) -> None:
        """Move the message to the dead letters; after an ack, record a copy."""
        statements = self.consumer.broker.statements
        if self.acked:
            await self.consumer.broker.database.write(
                lambda conn: statements.dead_letter(conn, self.claimed, reason, copy=True)
            )
        elif self.settle_now():
            await self._settle_with(
                lambda conn: statements.dead_letter(conn, self.claimed, reason, copy=False)
            )


class SqliteConsumer:
    """A subscription to one or more queues, holding at most ``prefetch`` deliveries."""

    def __init__(self, broker: SqliteBroker, queues: Sequence[str], prefetch: int) -> None:
        self.broker = broker
        self.closed = False
        self.held: dict[str, SqliteDelivery] = {}
        self._queues = list(queues)
        self._prefetch = prefetch
        self._id = uuid.uuid4().hex
        self._registered_at = -REGISTER_EVERY

    def is_closed(self) -> bool:
        """Whether :meth:`close` was called (a method: it may change across an await)."""
        return self.closed

    def _room(self, now: float) -> int:
        return self._prefetch - sum(1 for d in self.held.values() if d.lease_until > now)

    def _attempt(
        self, room: int, register: bool
    ) -> Callable[[sqlite3.Connection], tuple[list[Claimed], float | None]]:
        statements, queues, consumer = self.broker.statements, self._queues, self._id

        def attempt(conn: sqlite3.Connection) -> tuple[list[Claimed], float | None]:
            if register:
                with immediate(conn):
                    admin.register_consumer(conn, consumer, queues)
            if room > 0 and statements.has_ready(conn, queues):
                with immediate(conn):
                    claimed = statements.claim(conn, queues, room, uuid.uuid4().hex)
                if claimed:
                    return claimed, None
            return [], statements.next_due(conn, queues)

        return attempt

    async def fetch(self, max_count: int, timeout: float) -> Sequence[SqliteDelivery]:
        """Return up to ``max_count`` ready deliveries, waiting up to ``timeout`` seconds.

        Claims run off the event loop, shielded from cancellation: what a claim took is held
        by this consumer (and handed back by :meth:`close`) even if the caller was
        cancelled meanwhile. While nothing is ready it sleeps until this process commits a
        change, another process's commit shows in ``PRAGMA data_version``, a delayed
        message falls due or a lease lapses.

        Raises:
            BrokerError: the consumer is closed.
        """
        if self.closed:
            raise BrokerError("this consumer is closed; open a new one with consume()")
        database = self.broker.database
        end = anyio.current_time() + timeout
        while True:
            seen = database.watch.version
            now = time.time()
            room = min(max_count, self._room(now))
            register = anyio.current_time() - self._registered_at >= REGISTER_EVERY
            claimed: list[Claimed] = []
            due: float | None = None
            if room > 0 or register:  # no room: only a settle or a lapsing lease can help
                with anyio.CancelScope(shield=True):
                    claimed, due = await database.run(self._attempt(room, register))
            if register:
                self._registered_at = anyio.current_time()
            if claimed:
                deliveries = [SqliteDelivery(self, c) for c in claimed]
                if self.is_closed():  # closed while claiming: hand them back at once
                    back = [d.held for d in deliveries]
                    await database.write(functools.partial(QueueStatements.release, held=back))
                    return []
                for delivery in deliveries:
                    self.held[delivery.message_id] = delivery
                return deliveries
            left = end - anyio.current_time()
            if left <= 0 or self.is_closed():
                return []
            wait = left
            if due is not None:
                wait = min(wait, due - time.time())
            if room <= 0 and self.held:
                wait = min(wait, min(d.lease_until for d in self.held.values()) - time.time())
            await database.watch.wait(seen, max(wait, 0.001))
            if self.is_closed():
                return []

    def _own(self, deliveries: Sequence[Delivery]) -> list[SqliteDelivery]:
        owned = [d for d in deliveries if isinstance(d, SqliteDelivery) and d.consumer is self]
        if len(owned) != len(deliveries):
            raise DeliveryStateError("only deliveries fetched by this consumer can be settled here")
        return owned

    async def ack_many(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Ack deliveries in one transaction.

        Returns:
            Those not acked because their lease had lapsed and another claim took them.

        Raises:
            DeliveryStateError: a delivery was fetched by another consumer, or handed back
                by closing this one.
            BrokerConnectionError: the database was locked past ``busy_timeout`` or failed;
                nothing was acked.
        """
        todo = [d for d in self._own(deliveries) if d.settle_now()]
        if not todo:
            return []
        for delivery in todo:
            delivery.acked = True
        held = [d.held for d in todo]
        try:
            lost = await self.broker.database.write(lambda conn: QueueStatements.ack(conn, held))
        except BaseException:
            for delivery in todo:
                delivery.unsettle()
            raise
        return [todo[i] for i in lost]

    async def extend_leases(
        self, deliveries: Sequence[Delivery], seconds: float | None = None
    ) -> None:
        """Renew the leases of held deliveries in one transaction.

        Raises:
            DeliveryStateError: a delivery was fetched by another consumer.
        """
        todo = [d for d in self._own(deliveries) if not d.settled]
        if not todo or self.closed:
            return
        statements = self.broker.statements
        held = [d.held for d in todo]
        until = await self.broker.database.write(
            lambda conn: statements.extend(conn, held, seconds)
        )
        for delivery in todo:
            delivery.lease_until = until

    async def close(self) -> None:
        """Stop consuming and hand back every unsettled delivery now. Idempotent and
        shielded from cancellation."""
        if self.closed:
            return
        self.closed = True
        self.broker.forget(self)
        held = [d.held for d in self.held.values()]
        self.held.clear()
        consumer = self._id
        if not self.broker.database.is_open:
            return

        def hand_back(conn: sqlite3.Connection) -> None:
            QueueStatements.release(conn, held)
            admin.forget_consumer(conn, consumer)

        with anyio.CancelScope(shield=True):
            await self.broker.database.write(hand_back)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
