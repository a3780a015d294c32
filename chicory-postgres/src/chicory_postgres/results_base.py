"""What every face of the PostgreSQL result backend shares: its settings, prepared
statements, pool, waiters and the notifications that wake them.

:class:`ResultBackendBase` holds the state; the faces (:mod:`chicory_postgres.records`,
:mod:`chicory_postgres.revoking`) add the protocol methods, and
:class:`~chicory_postgres.results.PostgresResultBackend` puts them together with its
lifecycle, progress, heartbeats, joins and pruning.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from psycopg_pool import AsyncConnectionPool

from chicory.errors import ResultBackendError
from chicory_postgres import progress, revocations
from chicory_postgres.config import PostgresSettings
from chicory_postgres.connection import Listener, results_errors
from chicory_postgres.statements import TTL

__all__ = ["STORE", "ResultBackendBase"]

"""SQL for an expiry ``%(ttl)s`` seconds after the statement's start."""

STORE: Final = (
    """
WITH up AS (
    INSERT INTO {s}.results AS r (task_id, data, final, expires_at)
    SELECT t.task_id, t.data, t.final, """
    + TTL
    + """
    FROM unnest(%(ids)s::text[], %(datas)s::bytea[], %(finals)s::boolean[])
         AS t(task_id, data, final)
    ON CONFLICT (task_id) DO UPDATE
    SET data = EXCLUDED.data, final = EXCLUDED.final, expires_at = EXCLUDED.expires_at
    WHERE NOT r.final OR r.expires_at <= statement_timestamp()
    RETURNING r.task_id, r.final
)
SELECT {notify} FROM up WHERE up.final
"""
)
"""Upsert records (a live final one stays), notifying ``{notify}`` for each final one."""


class ResultBackendBase:
    """The state and helpers every face of
    :class:`~chicory_postgres.results.PostgresResultBackend` uses.

    Args:
        settings: Connection and behaviour settings.
    """

    def __init__(self, settings: PostgresSettings | None = None) -> None:
        self._settings = settings if settings is not None else PostgresSettings()
        self._schema = f'"{self._settings.schema}"'
        self._results_channel = self._settings.channel("results")
        self._revocations_channel = self._settings.channel("revocations")
        self._progress_channel = self._settings.channel("progress")
        notify = "pg_notify(%(channel)s, up.task_id)" if self._settings.notify else "NULL"
        self._store_sql = self._fill(STORE.replace("{notify}", notify))
        notify_progress = progress.NOTIFY if self._settings.notify else "NULL"
        self._revoke_sql = self._fill(revocations.revoke_statement(self._settings.notify))
        self._progress_sql = self._fill(progress.STORE.replace("{notify}", notify_progress))
        self._pool: AsyncConnectionPool | None = None
        self._listener: Listener | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._waiters: dict[str, set[anyio.Event]] = {}
        self._watchers: set[MemoryObjectSendStream[tuple[str, float]]] = set()
        self._closing = False

    @property
    def settings(self) -> PostgresSettings:
        """The backend's settings."""
        return self._settings

    def _fill(self, text: str) -> str:
        return text.replace("{s}", self._schema)

    @property
    def pool(self) -> AsyncConnectionPool:
        """The connection pool.

        Raises:
            ResultBackendError: the backend is not connected.
        """
        if self._pool is None:
            raise ResultBackendError(
                "the PostgreSQL result backend is not connected; use 'async with backend:'"
            )
        return self._pool

    async def _rows(self, statement: str, params: Mapping[str, Any], doing: str) -> list[Any]:
        with results_errors(self._settings, doing):
            async with self.pool.connection() as conn:
                cur = await conn.execute(statement, params, binary=True)
                return await cur.fetchall() if cur.description is not None else []

    def _closed(self) -> bool:
        return self._closing

    # -- notifications ---------------------------------------------------------------------

    def _notified(self, channel: str, payload: str) -> None:
        if channel == self._results_channel:
            for event in self._waiters.get(payload, ()):
                event.set()
        elif channel == self._revocations_channel:
            task_id, _, expires = payload.rpartition(" ")
            try:
                item = (task_id, float(expires))
            except ValueError:
                return
            for stream in list(self._watchers):
                try:
                    stream.send_nowait(item)
                except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self._watchers.discard(stream)
                    stream.close()

    def _wake_all(self) -> None:
        for waiting in self._waiters.values():
            for event in waiting:
                event.set()

    def _reconnected(self) -> None:
        self._wake_all()  # a final record may have landed while the connection was down

    def _dropped(self) -> None:
        self._wake_all()
        for stream in list(self._watchers):  # subscribers subscribe again and read the table
            stream.close()
        self._watchers.clear()
