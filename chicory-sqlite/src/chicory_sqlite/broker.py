"""``sqlite://``: a durable broker on one SQLite file, for worker processes on one machine.

URLs (SQLAlchemy's convention)::

    sqlite:///queue.sqlite3                      relative to the working directory
    sqlite:////var/lib/app/queue.sqlite3         an absolute path
    sqlite:////var/lib/app/q.sqlite3?lease_seconds=60&max_deliveries=5

Every operation is one transaction run off the event loop (:mod:`chicory_sqlite.database`);
the statements are in :mod:`chicory_sqlite.statements` (the hot path) and
:mod:`chicory_sqlite.admin` (counts, dead letters, inspection, delayed listing). Leases are
timed, on this host's clock, and renewable; each claim gets a token that every settle must
match. It offers every capability of the core protocol: rate and concurrency limits are in
:mod:`chicory_sqlite.flow`, priorities are a column the claim orders by
(:mod:`chicory_sqlite.statements`).

Limits: the processes must share one host and a local filesystem (WAL needs shared memory;
network filesystems break its locking), and SQLite lets one writer in at a time: each
transaction is short, and batches (``publish_many``, ``ack_many``, a claim of many) are one
each.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from chicory.broker import Capabilities, DeadLetter, OutgoingMessage, QueueCounts
from chicory.clock import to_epoch
from chicory.errors import (
    BrokerConnectionError,
    ConfigurationError,
)
from chicory.redact import redact_url
from chicory_sqlite import admin
from chicory_sqlite.consumer import SqliteConsumer
from chicory_sqlite.database import Database
from chicory_sqlite.flow import SqliteFlowMethods
from chicory_sqlite.operations import BrokerOperations
from chicory_sqlite.options import ConnectionOptions, parse_sqlite_url
from chicory_sqlite.statements import QueueStatements

__all__ = ["SqliteBroker"]


class SqliteBroker(SqliteFlowMethods, BrokerOperations):
    """A broker on one SQLite database file that several processes share.

    Args:
        path: The database file (created, with its tables, on first connect).
        lease_seconds: How long a fetched delivery stays invisible to other consumers unless
            renewed (workers renew every third of it).
        max_deliveries: Dead-letter instead of delivering a message a ``max + 1``-th time;
            ``None`` for no limit.
        max_body_bytes: Largest body accepted, or ``None`` for no limit.
        dead_letter_max_count: Dead letters kept per queue, the oldest dropped first
            (10,000 by default), or ``None`` for no limit.
        dead_letter_max_age: Seconds a dead letter is kept (30 days by default), or
            ``None`` for no limit.
        busy_timeout: Seconds a transaction waits for another process's write lock.
        poll_interval: Seconds between looks for other processes' changes while waiting.
        synchronous: ``"normal"`` or ``"full"`` (see
            :class:`~chicory_sqlite.options.ConnectionOptions`).

    Raises:
        ConfigurationError: an option is out of range, or no file is named.
    """

    def __init__(
        self,
        path: str,
        *,
        lease_seconds: float = 30.0,
        max_deliveries: int | None = None,
        max_body_bytes: int | None = None,
        dead_letter_max_count: int | None = 10_000,
        dead_letter_max_age: float | None = 30 * 24 * 3600.0,
        busy_timeout: float = 5.0,
        poll_interval: float = 0.01,
        synchronous: str = "normal",
    ) -> None:
        if not lease_seconds > 0:
            raise ConfigurationError(f"lease_seconds must be positive, got {lease_seconds}")
        if max_deliveries is not None and max_deliveries < 1:
            raise ConfigurationError(f"max_deliveries must be at least 1, got {max_deliveries}")
        if dead_letter_max_count is not None and dead_letter_max_count < 1:
            raise ConfigurationError(
                f"dead_letter_max_count must be at least 1, got {dead_letter_max_count}"
            )
        if dead_letter_max_age is not None and not dead_letter_max_age > 0:
            raise ConfigurationError(
                f"dead_letter_max_age must be positive, got {dead_letter_max_age}"
            )
        options = ConnectionOptions(
            path=path,
            busy_timeout=busy_timeout,
            poll_interval=poll_interval,
            synchronous=synchronous,
        )
        self.path = path
        self.database = Database(options, error=BrokerConnectionError, what="sqlite broker")
        self.statements = QueueStatements(
            lease_seconds=lease_seconds,
            max_deliveries=max_deliveries,
            dead_letter_max_count=dead_letter_max_count,
            dead_letter_max_age=dead_letter_max_age,
        )
        self._max_body_bytes = max_body_bytes
        self._capabilities = Capabilities(
            delayed_delivery=True,
            lease_renewal=True,
            lease_seconds=lease_seconds,
            dead_letter=True,
            fifo=True,
            atomic_retry=True,
            shared=True,
            max_body_bytes=max_body_bytes,
            dead_letter_max_count=dead_letter_max_count,
            dead_letter_max_age=dead_letter_max_age,
            delete_queue=True,
            inspection=True,
            delayed_listing=True,
            flow_control=True,
            unique_enqueue=True,
            priorities=True,
        )
        self._consumers: set[SqliteConsumer] = set()
        self._connected = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteBroker:
        """Build a broker from a ``sqlite://`` URL; keyword ``options`` override its query.

        Raises:
            ConfigurationError: not a ``sqlite://`` URL, no path, or an unknown option.
        """
        path, connection, broker = parse_sqlite_url(url)
        try:
            return cls(path, **{**connection, **broker, **options})
        except TypeError as exc:
            raise ConfigurationError(
                f"{exc} (building a broker from {redact_url(url)!r})"
            ) from None

    def __repr__(self) -> str:
        return f"<SqliteBroker {self.path}>"

    @property
    def capabilities(self) -> Capabilities:
        """Every capability of the core protocol."""
        return self._capabilities

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the database, creating the file and its tables if needed. Idempotent.

        Raises:
            BrokerConnectionError: the file cannot be opened.
            ConfigurationError: it cannot use WAL (a network filesystem?).
        """
        await self.database.open()
        self._connected = True

    async def close(self) -> None:
        """Close every consumer (handing back what it holds), then the database. Idempotent."""
        for consumer in list(self._consumers):
            await consumer.close()
        self._connected = False
        await self.database.close()

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

    def forget(self, consumer: SqliteConsumer) -> None:
        """Stop tracking a closed consumer."""
        self._consumers.discard(consumer)

    # -- publishing ------------------------------------------------------------------------

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
            MessageTooLargeError: the body is over ``max_body_bytes``.
            BrokerError: the broker is not connected.
            BrokerConnectionError: the database was locked past ``busy_timeout``.
        """
        (message_id,) = await self.publish_many(
            queue, [OutgoingMessage(body=body, headers=headers or {}, not_before=not_before)]
        )
        return message_id

    async def publish_many(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Enqueue many messages in one transaction; return their ids in order."""
        items = []
        for message in messages:
            self._check_size(message.body)
            due = to_epoch(message.not_before) if message.not_before is not None else None
            items.append((message.body, json.dumps(dict(message.headers)), due))
        statements = self.statements
        return await self._write(lambda conn: statements.publish(conn, queue, items))

    # -- consuming -------------------------------------------------------------------------

    def consume(self, queues: Sequence[str], *, prefetch: int) -> SqliteConsumer:
        """Open a consumer on ``queues`` holding at most ``prefetch`` deliveries."""
        if isinstance(queues, str) or not queues or prefetch < 1:
            raise ValueError("consume() needs a list of queue names and a prefetch of at least 1")
        self._check_connected()
        consumer = SqliteConsumer(self, queues, prefetch)
        self._consumers.add(consumer)
        return consumer

    # -- counts and dead letters -----------------------------------------------------------

    async def counts(self, queue: str) -> QueueCounts:
        """Current counts of ``queue``."""
        return await self._with_dead([queue], lambda conn: admin.counts(conn, queue))

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` dead letters of ``queue``, oldest first."""
        return await self._with_dead([queue], lambda conn: admin.dead_letters(conn, queue, limit))

    async def replay_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Put a dead letter back on its queue as a new message; False if unknown."""
        return await self._write(lambda conn: admin.replay(conn, queue, dead_letter_id))

    async def delete_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Delete one dead letter; False if unknown."""
        if not dead_letter_id.isdigit():
            return False
        return await self._write(
            lambda conn: (
                conn.execute(
                    "DELETE FROM chicory_dead_letters WHERE queue = ? AND id = ?",
                    (queue, int(dead_letter_id)),
                ).rowcount
                > 0
            )
        )

    async def purge_dead_letters(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; return how many."""
        return await self._write(
            lambda conn: int(
                conn.execute("DELETE FROM chicory_dead_letters WHERE queue = ?", (queue,)).rowcount
            )
        )

    async def delete_queue(self, queue: str) -> None:
        """Delete ``queue``: its messages, dead letters and name (close its consumers first)."""
        await self._write(lambda conn: admin.delete_queue(conn, queue))
