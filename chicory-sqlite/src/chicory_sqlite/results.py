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

This module is the facade: connecting, progress, heartbeats and group joins; records and
waiters are in :mod:`chicory_sqlite.records`, revocations in :mod:`chicory_sqlite.revoking`,
on the shared state of :mod:`chicory_sqlite.results_base`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self

from chicory.errors import ConfigurationError
from chicory.redact import redact_url
from chicory_sqlite import joins, progress
from chicory_sqlite.options import parse_sqlite_url
from chicory_sqlite.records import RecordMethods
from chicory_sqlite.revoking import RevocationMethods

__all__ = ["SqliteResultBackend"]


class SqliteResultBackend(RecordMethods, RevocationMethods):
    """A result backend on one SQLite database file that several processes share.

    Args:
        path: The database file (the broker's file is fine: the tables differ).
        busy_timeout: Seconds a write waits for another process's write lock.
        poll_interval: Seconds between looks for other processes' changes while waiting.
        synchronous: ``"normal"`` or ``"full"``.
        prune_interval: Seconds between two deletions of expired rows.
    """

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
