"""What every face of the SQLite result backend shares: its database, connection state,
pruning and the reader of ``seq``-ordered logs.

:class:`ResultBackendBase` holds the state; the faces (:mod:`chicory_sqlite.records`,
:mod:`chicory_sqlite.revoking`) add the protocol methods, and
:class:`~chicory_sqlite.results.SqliteResultBackend` puts them together with its lifecycle,
progress, heartbeats and joins.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

import anyio

from chicory.errors import ResultBackendError
from chicory_sqlite.database import Database
from chicory_sqlite.options import ConnectionOptions

__all__ = ["ResultBackendBase"]

T = TypeVar("T")


class ResultBackendBase:
    """The state and helpers every face of
    :class:`~chicory_sqlite.results.SqliteResultBackend` uses.

    Args:
        path: The database file (the broker's file is fine: the tables differ).
        busy_timeout: Seconds a write waits for another process's write lock.
        poll_interval: Seconds between looks for other processes' changes while waiting.
        synchronous: ``"normal"`` or ``"full"``.
        prune_interval: Seconds between two deletions of expired rows.
    """

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float = 5.0,
        poll_interval: float = 0.01,
        synchronous: str = "normal",
        prune_interval: float = 60.0,
    ) -> None:
        options = ConnectionOptions(
            path=path,
            busy_timeout=busy_timeout,
            poll_interval=poll_interval,
            synchronous=synchronous,
        )
        self.path = path
        self.database = Database(options, error=ResultBackendError, what="sqlite result backend")
        self._prune_interval = prune_interval
        self._pruned_at = -math.inf
        self._connected = False
        self._waiting: dict[str, int] = {}
        self._found: dict[str, bytes] = {}
        self._checked = -1
        self._check_lock = anyio.Lock()

    def is_connected(self) -> bool:
        """Whether the backend is connected (between ``connect()`` and ``close()``)."""
        return self._connected

    def _check_connected(self) -> None:
        if not self._connected:
            raise ResultBackendError(
                "the sqlite result backend is not connected; use 'async with backend:' or "
                "'await backend.connect()' first"
            )

    async def _read(self, call: Callable[[sqlite3.Connection], T]) -> T:
        self._check_connected()
        return await self.database.run(call)

    async def _write(self, call: Callable[[sqlite3.Connection], T]) -> T:
        self._check_connected()
        return await self.database.write(call)

    @staticmethod
    def _check_ttl(ttl: float) -> None:
        if not ttl > 0 or math.isinf(ttl):
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")

    def _prune(self, conn: sqlite3.Connection, now: float) -> None:
        if time.monotonic() - self._pruned_at < self._prune_interval:
            return
        self._pruned_at = time.monotonic()
        for table in (
            "chicory_results",
            "chicory_workers",
            "chicory_revocations",
            "chicory_group_members",
            "chicory_progress",
        ):
            conn.execute(f"DELETE FROM {table} WHERE expires_at <= ?", (now,))

    async def _rows_after(
        self, newer: Callable[[int], Callable[[sqlite3.Connection], list[Any]]], last: int
    ) -> AsyncGenerator[Any, None]:
        """The rows ``newer(last)`` reads, ``seq`` first, as they come: read again at each
        change of the database; the last row's ``seq`` becomes ``last``. Ends when the
        backend is closed."""
        watch = self.database.watch
        while self.is_connected():
            seen = watch.version
            try:
                rows = await self._read(newer(last))
            except ResultBackendError:
                if not self.is_connected():
                    return
                raise
            for row in rows:
                last = row[0]
                yield row
            await watch.wait(seen, 3600.0)
