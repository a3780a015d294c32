"""The records face of the SQLite result backend: store, read, wait for and forget task
records.

* A write is one upsert per record in one transaction; its ``WHERE`` keeps a live final record
  from being replaced by a late non-final one.
* Waiters never poll per task: they sleep on the connection's change watch (this process's
  own commits, and ``PRAGMA data_version`` for other processes'), and on each change one
  query looks up every task id waited for in this process at once.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Sequence

import anyio

from chicory.backend import StoredResult
from chicory.errors import ResultBackendError
from chicory_sqlite.results_base import ResultBackendBase

__all__ = ["RecordMethods"]

_UPSERT = (
    "INSERT INTO chicory_results (task_id, data, final, expires_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (task_id) DO UPDATE SET data = excluded.data, final = excluded.final,"
    " expires_at = excluded.expires_at"
    # A live final record is written once: no later record, final or not, replaces it.
    " WHERE NOT (chicory_results.final AND chicory_results.expires_at > ?)"
)
_CHUNK = 500  # ids per IN (...) list, well under SQLite's bound-parameter limit


class RecordMethods(ResultBackendBase):
    """The record methods of :class:`~chicory_sqlite.results.SqliteResultBackend`."""

    async def store(self, task_id: str, data: bytes, *, final: bool, ttl: float) -> None:
        """Write the record of ``task_id`` for ``ttl`` seconds; a non-final record never
        replaces a live final one.

        Raises:
            ResultBackendError: not connected, or the database failed.
            ValueError: ``ttl`` is not positive.
        """
        await self.store_many([StoredResult(task_id=task_id, data=data, final=final)], ttl=ttl)

    async def store_many(self, records: Sequence[StoredResult], *, ttl: float) -> None:
        """Write several records in one transaction, in order (same rules as :meth:`store`).

        Raises:
            ResultBackendError: not connected, or the database failed.
            ValueError: ``ttl`` is not positive.
        """
        self._check_ttl(ttl)
        if not records:
            return
        rows = [(r.task_id, r.data, int(r.final)) for r in records]

        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            self._prune(conn, now)
            conn.executemany(
                _UPSERT,
                [(task_id, data, final, now + ttl, now) for task_id, data, final in rows],
            )

        await self._write(write)

    async def get(self, task_id: str) -> bytes | None:
        """Return the live record of ``task_id``, or ``None``.

        Raises:
            ResultBackendError: not connected, or the database failed.
        """
        row = await self._read(
            lambda conn: conn.execute(
                "SELECT data FROM chicory_results WHERE task_id = ? AND expires_at > ?",
                (task_id, time.time()),
            ).fetchone()
        )
        return bytes(row[0]) if row is not None else None

    async def forget(self, task_id: str) -> bool:
        """Delete the record of ``task_id``; return whether there was a live one.

        Raises:
            ResultBackendError: not connected, or the database failed.
        """
        row = await self._write(
            lambda conn: conn.execute(
                "DELETE FROM chicory_results WHERE task_id = ? RETURNING expires_at", (task_id,)
            ).fetchone()
        )
        return row is not None and row[0] > time.time()

    @staticmethod
    def _finals(conn: sqlite3.Connection, task_ids: Sequence[str]) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        now = time.time()
        for start in range(0, len(task_ids), _CHUNK):
            chunk = task_ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            for task_id, data in conn.execute(
                f"SELECT task_id, data FROM chicory_results WHERE task_id IN ({marks})"
                " AND final AND expires_at > ?",
                (*chunk, now),
            ):
                found[task_id] = bytes(data)
        return found

    async def _check_waiting(self, version: int) -> None:
        """Look up every task id waited for, once per change ``version``."""
        async with self._check_lock:
            if self._checked >= version or not self._waiting:
                return
            self._checked = version
            ids = list(self._waiting)
            self._found.update(await self._read(lambda conn: self._finals(conn, ids)))

    async def wait(self, task_id: str, timeout: float | None) -> bytes | None:
        """Wait for the final record of ``task_id``; ``None`` on timeout or close.

        Returns at once if a final record is there. Otherwise it sleeps until the database
        changed (see the module docstring) and then looks again, together with every other
        waiter of this backend. Cancellation-safe.

        Raises:
            ResultBackendError: not connected, or the database failed.
        """
        self._check_connected()
        watch = self.database.watch
        self._waiting[task_id] = self._waiting.get(task_id, 0) + 1
        try:
            seen = watch.version
            found = await self._read(lambda conn: self._finals(conn, [task_id]))
            if task_id in found:
                return found[task_id]
            deadline = math.inf if timeout is None else anyio.current_time() + timeout
            while True:
                left = deadline - anyio.current_time()
                if left <= 0 or not self._connected:
                    return None
                await watch.wait(seen, min(left, 3600.0))
                if not self.is_connected():
                    return None
                seen = watch.version
                try:
                    await self._check_waiting(seen)
                except ResultBackendError:
                    if not self.is_connected():
                        return None  # closed while looking: waiters get None
                    raise
                data = self._found.get(task_id)
                if data is not None:
                    return data
        finally:
            left_waiting = self._waiting[task_id] - 1
            if left_waiting:
                self._waiting[task_id] = left_waiting
            else:
                del self._waiting[task_id]
                self._found.pop(task_id, None)
