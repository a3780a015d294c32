"""``postgresql://``: a durable, shared broker on one PostgreSQL table.

The tables are in :mod:`chicory_postgres.schema`, every statement in
:mod:`chicory_postgres.statements`, consuming and settling in :mod:`chicory_postgres.consumer`,
operators' listings in :mod:`chicory_postgres.inspect`. This module is the facade: connecting,
publishing (also inside the caller's own transaction: :meth:`PostgresBroker.publish_within`),
counts and dead-letter administration.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

import anyio
import orjson
from psycopg_pool import AsyncConnectionPool

from chicory.broker import Capabilities, DeadLetter, OutgoingMessage, QueueCounts
from chicory.delayed import DelayedPage
from chicory.errors import BrokerError, MessageTooLargeError
from chicory.inspection import DeadLetterPage, QueueStats
from chicory.priority import priority_of
from chicory.unique import UniqueClaim
from chicory_postgres import inspect, unique
from chicory_postgres.config import PostgresSettings, parse_settings
from chicory_postgres.connection import Listener, broker_errors, open_pool
from chicory_postgres.consumer import PostgresConsumer
from chicory_postgres.flow import PostgresFlowMethods
from chicory_postgres.statements import Statements
from chicory_postgres.within import caller_connection

__all__ = ["PostgresBroker"]

log = logging.getLogger("chicory.postgres")


class PostgresBroker(PostgresFlowMethods):
    """A shared, durable broker on PostgreSQL 13+ (``FOR UPDATE SKIP LOCKED`` claims).

    Args:
        settings: Connection and behaviour settings (default: ``postgresql://localhost``).
    """

    def __init__(self, settings: PostgresSettings | None = None) -> None:
        self._settings = settings if settings is not None else PostgresSettings()
        wake = self._settings.channel("wake") if self._settings.notify else None
        self._wake_channel = wake
        self.sql = Statements(self._settings.schema, wake)
        self._pool: AsyncConnectionPool | None = None
        self._listener: Listener | None = None
        self._consumers: set[PostgresConsumer] = set()
        self._waiters: dict[str, set[anyio.Event]] = {}
        self._registered: set[str] = set()
        self._lock = anyio.Lock()
        self._capabilities = Capabilities(
            delayed_delivery=True,
            lease_renewal=True,
            dead_letter=True,
            fifo=True,
            priorities=True,
            atomic_retry=True,
            shared=True,
            max_body_bytes=self._settings.max_body_bytes,
            lease_seconds=self._settings.lease_seconds,
            dead_letter_max_count=self._settings.dead_letter_max_count,
            dead_letter_max_age=self._settings.dead_letter_max_age,
            delete_queue=True,
            inspection=True,
            delayed_listing=True,
            unique_enqueue=True,
            transactional_enqueue=True,
            flow_control=True,
        )

    @classmethod
    def from_url(cls, url: str = "postgresql://localhost/postgres", **options: Any) -> Self:
        """Build a broker from a URL and options (see :mod:`chicory_postgres.config`).

        Raises:
            ConfigurationError: bad URL or option.
        """
        return cls(parse_settings(url, **options))

    def __repr__(self) -> str:
        return f"<PostgresBroker {self.display_url} schema={self._settings.schema}>"

    @property
    def settings(self) -> PostgresSettings:
        """The broker's settings."""
        return self._settings

    @property
    def display_url(self) -> str:
        """The server URL with the password redacted."""
        return self._settings.display_url

    @property
    def capabilities(self) -> Capabilities:
        """What this broker can do (every capability of the core protocol)."""
        return self._capabilities

    @property
    def pool(self) -> AsyncConnectionPool:
        """The connection pool.

        Raises:
            BrokerError: the broker is not connected.
        """
        if self._pool is None:
            raise BrokerError("the PostgreSQL broker is not connected; use 'async with broker:'")
        return self._pool

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the pool (migrating the schema unless told not to) and the LISTEN
        connection. Idempotent.

        Raises:
            BrokerConnectionError: PostgreSQL cannot be reached.
            ConfigurationError: the schema is behind and ``migrate`` is off.
        """
        async with self._lock:
            if self._pool is not None:
                return
            with broker_errors(self._settings, "connecting"):
                self._pool = await open_pool(self._settings, "chicory-broker")
            if self._wake_channel is not None:
                self._listener = Listener(
                    self._settings, [self._wake_channel], self._notified, self._wake_all
                )
                self._listener.start()

    async def close(self) -> None:
        """Close every consumer (handing deliveries back), then the connections. Idempotent."""
        try:
            for consumer in list(self._consumers):
                await consumer.close()
        finally:
            listener, self._listener = self._listener, None
            pool, self._pool = self._pool, None
            with anyio.CancelScope(shield=True):
                if listener is not None:
                    await listener.stop()
                if pool is not None:
                    await pool.close()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- statements ------------------------------------------------------------------------

    async def execute(self, statement: str, params: Mapping[str, Any], *, doing: str) -> int:
        """Run one statement on a pooled connection; return the rows it changed.

        Raises:
            BrokerConnectionError: the server could not be reached.
        """
        with broker_errors(self._settings, doing):
            async with self.pool.connection() as conn:
                cur = await conn.execute(statement, params)
                return cur.rowcount

    async def fetch_rows(
        self, statement: str, params: Mapping[str, Any], *, doing: str
    ) -> list[tuple[Any, ...]]:
        """Run one statement on a pooled connection; return its rows.

        Raises:
            BrokerConnectionError: the server could not be reached.
        """
        with broker_errors(self._settings, doing):
            async with self.pool.connection() as conn:
                cur = await conn.execute(statement, params, binary=True)
                return await cur.fetchall()

    # -- wake-ups --------------------------------------------------------------------------

    def add_waiter(self, queues: Sequence[str], event: anyio.Event) -> None:
        """Set ``event`` when something happens on one of ``queues``."""
        for queue in queues:
            self._waiters.setdefault(queue, set()).add(event)

    def remove_waiter(self, queues: Sequence[str], event: anyio.Event) -> None:
        """Stop setting ``event``."""
        for queue in queues:
            waiting = self._waiters.get(queue)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._waiters[queue]

    def wake_local(self, queue: str) -> None:
        """Wake this process's fetches waiting on ``queue``."""
        for event in self._waiters.get(queue, ()):
            event.set()

    def _notified(self, _channel: str, queue: str) -> None:
        self.wake_local(queue)

    def _wake_all(self) -> None:
        for waiting in self._waiters.values():
            for event in waiting:
                event.set()

    async def next_due(self, queues: Sequence[str]) -> float | None:
        """Seconds until a delay ends or a lease runs out in ``queues`` (``None``: never)."""
        rows = await self.fetch_rows(self.sql.next_due, {"queues": list(queues)}, doing="polling")
        due = rows[0][0] if rows else None
        return due.total_seconds() if isinstance(due, timedelta) else None

    # -- publishing ------------------------------------------------------------------------

    def check_body(self, body: bytes) -> None:
        """Refuse a body over ``max_body_bytes``.

        Raises:
            MessageTooLargeError: it is too large.
        """
        limit = self._settings.max_body_bytes
        if len(body) > limit:
            raise MessageTooLargeError(
                f"message body is {len(body)} bytes; the PostgreSQL broker accepts at most "
                f"{limit} (raise max_body_bytes, up to 1 GiB, or send less data)"
            )

    def _publish_params(
        self, queue: str, messages: Sequence[OutgoingMessage]
    ) -> tuple[list[uuid.UUID], dict[str, Any]]:
        ids = [uuid.uuid4() for _ in messages]
        for message in messages:
            self.check_body(message.body)
            due = message.not_before
            if due is not None and due.tzinfo is None:
                raise ValueError(
                    f"not_before must be an aware datetime (UTC), got the naive {due!r}"
                )
        params = {
            "queue": queue,
            "channel": self._wake_channel,
            "ids": ids,
            "bodies": [m.body for m in messages],
            "headers": [_headers_json(m.headers) for m in messages],
            "run_at": [m.not_before for m in messages],
            "priorities": [priority_of(m.headers.items()) for m in messages],
        }
        return ids, params

    async def register_queues(self, queues: Sequence[str]) -> None:
        """Record ``queues`` as in use (for :meth:`queues`), once per broker and queue."""
        for queue in queues:
            if queue not in self._registered:
                await self.execute(
                    self.sql.register_queue, {"queue": queue}, doing="registering a queue"
                )
                self._registered.add(queue)

    async def publish(
        self,
        queue: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        not_before: datetime | None = None,
    ) -> str:
        """Enqueue one message; return its id.

        Raises:
            ValueError: ``not_before`` is naive.
            MessageTooLargeError: the body exceeds ``max_body_bytes``.
            BrokerConnectionError: PostgreSQL could not be reached.
        """
        ids = await self.publish_many(
            queue, [OutgoingMessage(body=body, headers=headers or {}, not_before=not_before)]
        )
        return ids[0]

    async def publish_many(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Enqueue many messages in one statement (one transaction); return their ids.

        Raises:
            ValueError: a ``not_before`` is naive (nothing is published).
            MessageTooLargeError: a body exceeds ``max_body_bytes`` (nothing is published).
            BrokerConnectionError: PostgreSQL could not be reached (nothing is published,
                or everything, if the connection broke after the commit).
        """
        if not messages:
            return []
        ids, params = self._publish_params(queue, messages)
        await self.register_queues([queue])
        await self.execute(self.sql.publish, params, doing="publishing")
        self.wake_local(queue)
        return [str(i) for i in ids]

    async def publish_within(
        self, connection: object, queue: str, messages: Sequence[OutgoingMessage]
    ) -> list[str]:
        """Enqueue messages on the caller's connection, inside its open transaction.

        They exist (and consumers are notified) only if that transaction commits. Accepts a
        psycopg ``AsyncConnection``, an asyncpg ``Connection`` (a pool's included), and a
        SQLAlchemy ``AsyncSession`` or ``AsyncConnection`` on either driver (see
        :mod:`chicory_postgres.within` and ``docs/postgres.md``).

        Raises:
            CapabilityError: ``connection`` is none of those.
            ValueError / MessageTooLargeError: as :meth:`publish_many` (nothing is sent).
        """
        if not messages:
            return []
        ids, params = self._publish_params(queue, messages)
        conn = await caller_connection(connection)
        await self.register_queues([queue])
        await conn.fetch(self.sql.publish, params)
        return [str(i) for i in ids]

    # -- consuming -------------------------------------------------------------------------

    def consume(self, queues: Sequence[str], *, prefetch: int) -> PostgresConsumer:
        """Open a consumer on ``queues`` holding at most ``prefetch`` deliveries.

        Raises:
            BrokerError: the broker is not connected.
        """
        self.pool  # noqa: B018 - raises if not connected
        consumer = PostgresConsumer(self, queues, prefetch)
        self._consumers.add(consumer)
        return consumer

    def forget(self, consumer: PostgresConsumer) -> None:
        """Stop tracking a closed consumer (called by the consumer)."""
        self._consumers.discard(consumer)

    # -- counts and dead letters -----------------------------------------------------------

    async def counts(self, queue: str) -> QueueCounts:
        """Ready, in-flight, delayed and dead counts of ``queue``."""
        stats = (await self.queue_stats([queue]))[0]
        return QueueCounts(
            ready=stats.ready, in_flight=stats.in_flight, delayed=stats.delayed, dead=stats.dead
        )

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` dead letters of ``queue``, oldest first."""
        if limit < 1:
            return []
        return (await self.dead_letter_page(queue, limit=limit)).letters

    async def replay_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Put a dead letter back as a new ready message (one statement). False if unknown."""
        return await inspect.replay(self, queue, dead_letter_id, None)

    async def delete_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Delete one dead letter. False if unknown."""
        return await inspect.delete_dead_letter(self, queue, dead_letter_id)

    async def purge_dead_letters(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; return how many."""
        return await inspect.purge_dead_letters(self, queue)

    async def delete_queue(self, queue: str) -> None:
        """Delete ``queue``: its messages of every kind, its dead letters and its name."""
        await inspect.delete_queue(self, queue)
        self._registered.discard(queue)

    # -- inspection (Capabilities.inspection) ------------------------------------------------

    async def queues(self) -> list[str]:
        """Every queue in use, sorted."""
        return await inspect.queues(self)

    async def queue_stats(self, queues: Sequence[str]) -> list[QueueStats]:
        """Counts of each of ``queues`` (in that order) in one query."""
        return await inspect.queue_stats(self, queues)

    async def dead_letter_page(
        self,
        queue: str,
        *,
        after: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
    ) -> DeadLetterPage:
        """One page of ``queue``'s dead letters (see :class:`chicory.inspection.Inspection`)."""
        return await inspect.dead_letter_page(
            self,
            queue,
            after=after,
            limit=limit,
            since=since,
            until=until,
            newest_first=newest_first,
        )

    async def get_dead_letter(self, queue: str, dead_letter_id: str) -> DeadLetter | None:
        """One dead letter of ``queue``, or ``None``."""
        return await inspect.get_dead_letter(self, queue, dead_letter_id)

    async def requeue_dead_letter(
        self, queue: str, dead_letter_id: str, body: bytes, headers: Mapping[str, str]
    ) -> bool:
        """Swap a dead letter for a new ready message with ``body`` and ``headers``."""
        self.check_body(body)
        return await inspect.replay(self, queue, dead_letter_id, (body, headers))

    # -- delayed listing (Capabilities.delayed_listing) ---------------------------------------

    async def delayed_page(
        self, queue: str, *, after: str | None = None, limit: int = 100
    ) -> DelayedPage:
        """One page of ``queue``'s delayed messages, soonest due first."""
        return await inspect.delayed_page(self, queue, after=after, limit=limit)

    async def remove_delayed(self, queue: str, message_id: str) -> bool:
        """Remove a delayed message so it is never delivered; False if not delayed."""
        return await inspect.remove_delayed(self, queue, message_id)

    # -- unique enqueue (Capabilities.unique_enqueue) ------------------------------------------

    async def publish_unique(
        self,
        queue: str,
        message: OutgoingMessage,
        *,
        key: str,
        holder: str,
        hold: float,
        keep: float = 0.0,
    ) -> UniqueClaim:
        """Publish ``message`` unless ``key`` is held in ``queue``, in one statement."""
        return await unique.publish_unique(
            self, queue, message, key=key, holder=holder, hold=hold, keep=keep
        )

    async def publish_unique_within(
        self,
        connection: object,
        queue: str,
        message: OutgoingMessage,
        *,
        key: str,
        holder: str,
        hold: float,
        keep: float = 0.0,
    ) -> UniqueClaim:
        """:meth:`publish_unique` on the caller's connection, inside its open transaction:
        a rollback frees the key with the message (connections as :meth:`publish_within`)."""
        return await unique.publish_unique(
            self, queue, message, key=key, holder=holder, hold=hold, keep=keep, within=connection
        )

    async def release_unique(self, queue: str, key: str, holder: str) -> bool:
        """End ``holder``'s claim on ``key`` (at once, or when its keep time ends)."""
        return await unique.release_unique(self, queue, key, holder)

    async def unique_holder(self, queue: str, key: str) -> str | None:
        """Who holds ``key`` in ``queue`` now, or ``None``."""
        return await unique.unique_holder(self, queue, key)


def _headers_json(headers: Mapping[str, str]) -> bytes:
    """Headers as stored: JSON bytes (any string survives, NUL included, unlike jsonb)."""
    return orjson.dumps(dict(headers)) if headers else b"{}"
