"""What every face of the PostgreSQL broker shares: its settings, statements, pool and
wake-ups.

:class:`PostgresBrokerBase` holds the state and the helpers; the faces
(:mod:`chicory_postgres.publishing`, :mod:`chicory_postgres.dead_letters`,
:mod:`chicory_postgres.admin`, :mod:`chicory_postgres.flow`) add the protocol methods, and
:class:`~chicory_postgres.broker.PostgresBroker` puts them together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any

import anyio
from psycopg_pool import AsyncConnectionPool

from chicory.errors import BrokerError, MessageTooLargeError
from chicory_postgres.config import PostgresSettings
from chicory_postgres.connection import Listener, broker_errors
from chicory_postgres.statements import Statements

__all__ = ["PostgresBrokerBase"]


class PostgresBrokerBase:
    """The state and helpers every face of :class:`~chicory_postgres.broker.PostgresBroker`
    uses.

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
        self._waiters: dict[str, set[anyio.Event]] = {}
        self._registered: set[str] = set()

    @property
    def settings(self) -> PostgresSettings:
        """The broker's settings."""
        return self._settings

    @property
    def display_url(self) -> str:
        """The server URL with the password redacted."""
        return self._settings.display_url

    @property
    def pool(self) -> AsyncConnectionPool:
        """The connection pool.

        Raises:
            BrokerError: the broker is not connected.
        """
        if self._pool is None:
            raise BrokerError("the PostgreSQL broker is not connected; use 'async with broker:'")
        return self._pool

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

    async def register_queues(self, queues: Sequence[str]) -> None:
        """Record ``queues`` as in use (for :meth:`queues`), once per broker and queue."""
        for queue in queues:
            if queue not in self._registered:
                await self.execute(
                    self.sql.register_queue, {"queue": queue}, doing="registering a queue"
                )
                self._registered.add(queue)

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
