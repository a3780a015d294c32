"""The revocations face of the SQLite result backend
(:class:`chicory.revocation.Revocations`): record, list and watch cancelled task ids.

Each revoke takes a new ``seq`` in ``chicory_revocations``; watchers read the rows after the
last ``seq`` they saw at each change of the database (see
``_rows_after`` in :mod:`chicory_sqlite.results_base`).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from chicory_sqlite.results_base import ResultBackendBase

__all__ = ["RevocationMethods"]


class RevocationMethods(ResultBackendBase):
    """The revocation methods of :class:`~chicory_sqlite.results.SqliteResultBackend`."""

    async def revoke(self, task_id: str, *, ttl: float) -> None:
        """Record that ``task_id`` is cancelled for ``ttl`` seconds (revoking again extends
        the record); watchers in every process see it at their next look.

        Raises:
            ResultBackendError: not connected, or the database failed.
            ValueError: ``ttl`` is not a positive number.
        """
        self._check_ttl(ttl)

        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            row = conn.execute(
                "SELECT expires_at FROM chicory_revocations WHERE task_id = ?", (task_id,)
            ).fetchone()
            expires_at = max(now + ttl, row[0] if row is not None else 0.0)
            conn.execute(
                "INSERT OR REPLACE INTO chicory_revocations (task_id, expires_at) VALUES (?, ?)",
                (task_id, expires_at),
            )

        await self._write(write)

    async def revocations(self) -> dict[str, float]:
        """Every live revocation record: task id -> expiry (seconds since the epoch).

        Raises:
            ResultBackendError: not connected, or the database failed.
        """
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT task_id, expires_at FROM chicory_revocations WHERE expires_at > ?",
                (time.time(),),
            ).fetchall()
        )
        return dict(rows)

    @asynccontextmanager
    async def watch_revocations(self) -> AsyncIterator[AsyncIterator[tuple[str, float]]]:
        """Subscribe to revocations recorded from now on: ``(task_id, expires_at)`` each.

        The iterator ends when the backend is closed.

        Raises:
            ResultBackendError: not connected, or the database failed.
        """
        (start,) = await self._read(
            lambda conn: conn.execute(
                "SELECT COALESCE(MAX(seq), 0) FROM chicory_revocations"
            ).fetchone()
        )
        stream = self._revocations_after(start)
        try:
            yield stream
        finally:
            await stream.aclose()

    async def _revocations_after(self, last: int) -> AsyncGenerator[tuple[str, float], None]:
        def newer(after: int) -> Callable[[sqlite3.Connection], list[Any]]:
            return lambda conn: conn.execute(
                "SELECT seq, task_id, expires_at FROM chicory_revocations"
                " WHERE seq > ? ORDER BY seq",
                (after,),
            ).fetchall()

        async for _, task_id, expires_at in self._rows_after(newer, last):
            yield (task_id, expires_at)
