"""``sqlite://`` results: task records, worker heartbeats and revocations in a SQLite file.

Tables (:mod:`chicory_sqlite.schema`): ``chicory_results`` (task id, record, final flag,
expiry), ``chicory_workers`` (heartbeats), ``chicory_revocations`` (cancelled task ids; each
revoke takes a new ``seq``, which is how watchers see what is new), ``chicory_group_members``
(workflow group joins, :mod:`chicory.workflow.joins`: one row per member, written and counted
in one ``BEGIN IMMEDIATE`` transaction, so atomic across processes), ``chicory_progress``
(recent progress reports, pushed to subscribers in order: :mod:`chicory_sqlite.progress`).

* A write is one upsert per record in one transaction; its ``WHERE`` keeps a live final record
  from being replaced by a late non-final one.
* Waiters never poll per task: they sleep on the connection's change watch (this process's
  own commits, and ``PRAGMA data_version`` for other processes'), and on each change one
  query looks up every task id waited for in this process at once.
* Expired rows count as absent at once and are deleted at most every ``prune_interval``
  seconds by a write (one indexed range delete per table).
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio

from chicory.backend import StoredResult
from chicory.errors import ConfigurationError, ResultBackendError
from chicory.redact import redact_url
from chicory_sqlite import joins, progress
from chicory_sqlite.database import Database
from chicory_sqlite.options import ConnectionOptions, parse_sqlite_url

__all__ = ["SqliteResultBackend"]

T = TypeVar("T")

_UPSERT = (
    "INSERT INTO chicory_results (task_id, data, final, expires_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (task_id) DO UPDATE SET data = excluded.data, final = excluded.final,"
    " expires_at = excluded.expires_at"
    # A live final record is written once: no later record, final or not, replaces it.
    " WHERE NOT (chicory_results.final AND chicory_results.expires_at > ?)"
)
_CHUNK = 500  # ids per IN (...) list, well under SQLite's bound-parameter limit


class SqliteResultBackend:
    """A result backend on one SQLite database file that several processes share.

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

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SqliteResultBackend:
        """Build a backend from a ``sqlite://`` URL (the broker's options are ignored).

        Raises:
            ConfigurationError: not a ``sqlite://`` URL, no path, or an unknown option.
        """
        path, connection, _ = parse_sqlite_url(url)
        try:
            return cls(path, **{**connection, **options})
        except TypeError as exc:
            raise ConfigurationError(
                f"{exc} (building a result backend from {redact_url(url)!r})"
            ) from None

    def __repr__(self) -> str:
        return f"<SqliteResultBackend {self.path}>"

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the database, creating it and its tables if needed. Idempotent."""
        await self.database.open()
        self._connected = True

    async def close(self) -> None:
        """Close the database and wake every waiter with ``None``. Idempotent."""
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

    # -- records ---------------------------------------------------------------------------

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

    # -- progress --------------------------------------------------------------------------

    async def store_progress(self, task_id: str, data: bytes, *, ttl: float) -> None:
        """Write the progress record of ``task_id`` (never over a live final one) and log it
        for its subscribers, in one transaction.

        Raises:
            ResultBackendError: not connected, or the database failed.
            ValueError: ``ttl`` is not positive.
        """
        self._check_ttl(ttl)

        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            self._prune(conn, now)
            progress.record_report(conn, task_id, data, ttl, now)

        await self._write(write)

    @asynccontextmanager
    async def watch_progress(self, task_id: str) -> AsyncIterator[AsyncIterator[bytes]]:
        """Subscribe to the progress reports of ``task_id`` stored from now on.

        The iterator ends when the backend is closed.

        Raises:
            ResultBackendError: not connected, or the database failed.
        """
        start = await self._read(progress.start_of_log(task_id))
        stream = self._reports_after(task_id, start)
        try:
            yield stream
        finally:
            await stream.aclose()

    async def _reports_after(self, task_id: str, last: int) -> AsyncGenerator[bytes, None]:
        async for _, data in self._rows_after(
            lambda after: progress.newer_reports(task_id, after), last
        ):
            yield bytes(data)

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

    # -- heartbeats ------------------------------------------------------------------------

    async def heartbeat(self, worker_id: str, data: bytes, *, ttl: float) -> None:
        """Record that ``worker_id`` is alive for ``ttl`` seconds.

        Raises:
            ResultBackendError: not connected, or the database failed.
            ValueError: ``ttl`` is not positive.
        """
        self._check_ttl(ttl)
        await self._write(
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO chicory_workers (worker_id, data, expires_at)"
                " VALUES (?, ?, ?)",
                (worker_id, data, time.time() + ttl),
            )
        )

    async def workers(self) -> Mapping[str, bytes]:
        """The heartbeat records of live workers, by worker id.

        Raises:
            ResultBackendError: not connected, or the database failed.
        """
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT worker_id, data FROM chicory_workers WHERE expires_at > ?", (time.time(),)
            ).fetchall()
        )
        return {worker_id: bytes(data) for worker_id, data in rows}

    # -- group joins -----------------------------------------------------------------------

    async def join(
        self, group_id: str, index: int, size: int, data: bytes, *, ttl: float
    ) -> list[bytes] | None:
        """Record member ``index`` of the ``size`` members of ``group_id``; every member's
        record in index order if all are recorded now, else ``None`` (one transaction; see
        :class:`chicory.workflow.joins.GroupJoins`).

        Raises:
            ResultBackendError: not connected, or the database failed.
            ValueError: ``index`` is not in ``range(size)``, or ``ttl`` is not positive.
        """
        self._check_ttl(ttl)
        if not 0 <= index < size:
            raise ValueError(f"member index {index} is not in range({size})")

        return await self._write(
            lambda conn: joins.record_member(conn, group_id, index, size, data, ttl)
        )

    # -- revocation records ----------------------------------------------------------------

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
