"""The PostgreSQL result backend: records, heartbeats and revocations in tables.

* A record is one row of ``results`` (upserted; nothing replaces a live final record: it is
  written once). Storing a final record sends ``NOTIFY <schema>_results, '<task id>'`` in the same
  statement, delivered when it commits.
* Waiters: one LISTEN connection per backend serves every ``wait()`` of the process: a
  notification wakes the waiters of that task id, which read the row once. Nothing polls per
  result while the connection is up; while it is down (and with ``notify=False``) waiters read
  their row every ``poll_interval``.
* Expired rows are invisible at once (every read compares ``expires_at`` with the server's
  clock) and deleted every ``prune_interval`` by a background task of each connected backend,
  in batches, so tables stay small without a cron job.
* Revocations are rows of ``revocations``, pushed with ``NOTIFY <schema>_revocations``.
* Progress (:mod:`chicory.progress`) is the task's non-final record, logged in ``progress``
  and pushed with ``NOTIFY <schema>_progress`` to subscribers that listen on connections of
  their own (see :mod:`chicory_postgres.progress`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from psycopg_pool import AsyncConnectionPool

from chicory.backend import StoredResult
from chicory.errors import ResultBackendError
from chicory_postgres import joins, progress, revocations
from chicory_postgres.config import PostgresSettings, parse_settings
from chicory_postgres.connection import Listener, open_pool, results_errors

__all__ = ["PostgresResultBackend"]

log = logging.getLogger("chicory.postgres")

_TTL = "statement_timestamp() + %(ttl)s * interval '1 second'"

_STORE = (
    """
WITH up AS (
    INSERT INTO {s}.results AS r (task_id, data, final, expires_at)
    SELECT t.task_id, t.data, t.final, """
    + _TTL
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

_PRUNE_BATCH = 5000


class PostgresResultBackend:
    """Task records in PostgreSQL, waiters woken by LISTEN/NOTIFY.

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
        self._store_sql = self._fill(_STORE.replace("{notify}", notify))
        notify_progress = progress.NOTIFY if self._settings.notify else "NULL"
        self._revoke_sql = self._fill(revocations.revoke_statement(self._settings.notify))
        self._progress_sql = self._fill(progress.STORE.replace("{notify}", notify_progress))
        self._pool: AsyncConnectionPool | None = None
        self._listener: Listener | None = None
        self._pruner: asyncio.Task[None] | None = None
        self._waiters: dict[str, set[anyio.Event]] = {}
        self._watchers: set[MemoryObjectSendStream[tuple[str, float]]] = set()
        self._closing = False
        self._lock = anyio.Lock()

    @classmethod
    def from_url(cls, url: str = "postgresql://localhost/postgres", **options: Any) -> Self:
        """Build a result backend from a URL and options (see :mod:`chicory_postgres.config`).

        Raises:
            ConfigurationError: bad URL or option.
        """
        return cls(parse_settings(url, **options))

    def __repr__(self) -> str:
        return (
            f"<PostgresResultBackend {self._settings.display_url} schema={self._settings.schema}>"
        )

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

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the pool (migrating unless told not to) and the LISTEN connection.

        Raises:
            ResultBackendError: PostgreSQL cannot be reached.
            ConfigurationError: the schema is behind and ``migrate`` is off.
        """
        async with self._lock:
            if self._pool is not None:
                return
            with results_errors(self._settings, "connecting"):
                self._pool = await open_pool(self._settings, "chicory-results")
            self._closing = False
            loop = asyncio.get_running_loop()
            self._pruner = loop.create_task(self._prune_forever(), name="chicory-postgres-prune")
            if self._settings.notify:
                self._listener = Listener(
                    self._settings,
                    [self._results_channel, self._revocations_channel],
                    self._notified,
                    self._reconnected,
                    self._dropped,
                )
                self._listener.start()

    async def close(self) -> None:
        """Close the connections and wake every waiter with ``None``. Idempotent."""
        self._closing = True
        self._wake_all()
        self._dropped()
        listener, self._listener = self._listener, None
        pruner, self._pruner = self._pruner, None
        pool, self._pool = self._pool, None
        with anyio.CancelScope(shield=True):
            if pruner is not None:
                pruner.cancel()
                await asyncio.gather(pruner, return_exceptions=True)
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

    async def _rows(self, statement: str, params: Mapping[str, Any], doing: str) -> list[Any]:
        with results_errors(self._settings, doing):
            async with self.pool.connection() as conn:
                cur = await conn.execute(statement, params, binary=True)
                return await cur.fetchall() if cur.description is not None else []

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

    # -- records ---------------------------------------------------------------------------

    async def store(self, task_id: str, data: bytes, *, final: bool, ttl: float) -> None:
        """Write the record of ``task_id`` (nothing replaces a live final record)."""
        await self.store_many([StoredResult(task_id=task_id, data=data, final=final)], ttl=ttl)

    async def store_many(self, records: Sequence[StoredResult], *, ttl: float) -> None:
        """Write several records in one statement (same rules as :meth:`store`)."""
        chosen: dict[str, StoredResult] = {}
        for record in records:
            before = chosen.get(record.task_id)
            if before is None or not before.final:  # the first final one stands
                chosen[record.task_id] = record
        if not chosen:
            return
        items = list(chosen.values())
        await self._rows(
            self._store_sql,
            {
                "ids": [r.task_id for r in items],
                "datas": [r.data for r in items],
                "finals": [r.final for r in items],
                "ttl": ttl if ttl > 0 else self._settings.result_ttl,
                "channel": self._results_channel,
            },
            "storing results",
        )
        for record in items:
            if record.final:
                for event in self._waiters.get(record.task_id, ()):
                    event.set()

    async def _read(self, task_id: str) -> tuple[bytes, bool] | None:
        rows = await self._rows(
            self._fill(
                "SELECT data, final FROM {s}.results "
                "WHERE task_id = %(id)s AND expires_at > statement_timestamp()"
            ),
            {"id": task_id},
            "reading a result",
        )
        return (bytes(rows[0][0]), bool(rows[0][1])) if rows else None

    async def get(self, task_id: str) -> bytes | None:
        """The current record of ``task_id``, or ``None``."""
        found = await self._read(task_id)
        return None if found is None else found[0]

    async def wait(self, task_id: str, timeout: float | None) -> bytes | None:
        """Wait for the final record of ``task_id``; ``None`` on timeout or close."""
        end = None if timeout is None else anyio.current_time() + timeout
        while not self._closing:
            event = anyio.Event()
            self._waiters.setdefault(task_id, set()).add(event)
            try:
                found = await self._read(task_id)
                if found is not None and found[1]:
                    return found[0]
                left = None if end is None else end - anyio.current_time()
                if left is not None and left <= 0:
                    return None
                listening = self._listener is not None and self._listener.connected
                wait = left if listening else self._settings.poll_interval
                if wait is not None and left is not None:
                    wait = min(wait, left)
                with anyio.move_on_after(wait if wait is not None else float("inf")):
                    await event.wait()
            finally:
                waiting = self._waiters.get(task_id)
                if waiting is not None:
                    waiting.discard(event)
                    if not waiting:
                        del self._waiters[task_id]
        return None

    # -- progress --------------------------------------------------------------------------

    async def store_progress(self, task_id: str, data: bytes, *, ttl: float) -> None:
        """Write the progress record of ``task_id`` (never over a live final one) and notify
        its subscribers, in one statement.

        Raises:
            ResultBackendError: PostgreSQL could not be reached.
        """
        params = {
            "id": task_id,
            "data": data,
            "ttl": ttl if ttl > 0 else self._settings.result_ttl,
            "channel": self._progress_channel,
        }
        await self._rows(self._progress_sql, params, "storing progress")

    def watch_progress(self, task_id: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Subscribe, on a connection of its own, to the progress records of ``task_id``.

        The iterator raises :class:`~chicory.errors.ResultBackendError` when the connection
        drops.

        Raises:
            ResultBackendError: PostgreSQL could not be reached.
        """
        return progress.watch(self._settings, self._progress_channel, task_id, self._progress_rows)

    async def _progress_rows(self, statement: str, params: dict[str, Any]) -> list[Any]:
        return await self._rows(self._fill(statement), params, "reading progress")

    async def forget(self, task_id: str) -> bool:
        """Delete the record of ``task_id``; return whether there was a live one."""
        rows = await self._rows(
            self._fill(
                "DELETE FROM {s}.results WHERE task_id = %(id)s "
                "RETURNING expires_at > statement_timestamp()"
            ),
            {"id": task_id},
            "forgetting a result",
        )
        return bool(rows and rows[0][0])

    # -- heartbeats ------------------------------------------------------------------------

    async def heartbeat(self, worker_id: str, data: bytes, *, ttl: float) -> None:
        """Record that ``worker_id`` is alive for ``ttl`` seconds."""
        await self._rows(
            self._fill(
                "INSERT INTO {s}.workers (worker_id, data, expires_at) "
                "VALUES (%(id)s, %(data)s, " + _TTL + ") ON CONFLICT (worker_id) DO UPDATE "
                "SET data = EXCLUDED.data, expires_at = EXCLUDED.expires_at"
            ),
            {"id": worker_id, "data": data, "ttl": ttl},
            "recording a heartbeat",
        )

    async def workers(self) -> Mapping[str, bytes]:
        """The heartbeat records of live workers, by worker id."""
        rows = await self._rows(
            self._fill(
                "SELECT worker_id, data FROM {s}.workers WHERE expires_at > statement_timestamp()"
            ),
            {},
            "listing workers",
        )
        return {worker_id: bytes(data) for worker_id, data in rows}

    # -- revocations (chicory.revocation.Revocations) ----------------------------------------

    async def revoke(self, task_id: str, *, ttl: float) -> None:
        """Record ``task_id`` as cancelled for ``ttl`` s (never shortening a longer record)
        and push it to every watcher."""
        await self._rows(
            self._revoke_sql,
            {"id": task_id, "ttl": ttl, "channel": self._revocations_channel},
            "recording a revocation",
        )

    async def revocations(self) -> dict[str, float]:
        """Every live revocation: task id -> expiry (seconds since the epoch)."""
        rows = await self._rows(self._fill(revocations.LIVE), {}, "listing revocations")
        return {task_id: expires.astimezone(UTC).timestamp() for task_id, expires in rows}

    @asynccontextmanager
    async def watch_revocations(self) -> AsyncIterator[AsyncIterator[tuple[str, float]]]:
        """Subscribe to revocations; the iterator ends when the LISTEN connection drops.

        With ``notify=False`` the subscription reads the table every ``poll_interval``.
        """
        if not self._settings.notify:
            live = await self.revocations()  # what is live now is not pushed
            yield revocations.polled(
                live, self.revocations, self._settings.poll_interval, self._closed
            )
            return
        listener = self._listener
        if listener is None:
            raise ResultBackendError("the PostgreSQL result backend is not connected")
        with anyio.move_on_after(self._settings.pool_timeout):
            await listener.wait_connected()
        if not listener.connected:
            raise ResultBackendError(
                f"no LISTEN connection to {self._settings.display_url} to watch revocations"
            )
        send, receive = anyio.create_memory_object_stream[tuple[str, float]](1000)
        self._watchers.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._watchers.discard(send)
            send.close()

    def _closed(self) -> bool:
        return self._closing

    # -- group joins -----------------------------------------------------------------------

    async def join(
        self, group_id: str, index: int, size: int, data: bytes, *, ttl: float
    ) -> list[bytes] | None:
        """Record member ``index`` of the ``size`` members of ``group_id``; every member's
        record in index order if all are recorded now, else ``None`` (see
        :class:`chicory.workflow.joins.GroupJoins`).

        One transaction holding an advisory lock on the group, so concurrent joins of one
        group are taken one at a time and exactly one sees it complete.

        Raises:
            ResultBackendError: PostgreSQL could not be reached.
            ValueError: ``index`` is not in ``range(size)``, or ``ttl`` is not positive.
        """
        if not 0 <= index < size:
            raise ValueError(f"member index {index} is not in range({size})")
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, got {ttl}")
        with results_errors(self._settings, f"joining member {index} of group {group_id}"):
            async with self.pool.connection() as conn, conn.transaction():
                return await joins.join(conn, self._schema, group_id, index, size, data, ttl)

    # -- pruning ---------------------------------------------------------------------------

    async def prune(self) -> int:
        """Delete expired results, heartbeats and revocations (in batches); return how many."""
        total = 0
        for table in ("results", "workers", "revocations", "group_members", "progress"):
            while True:
                rows = await self._rows(
                    self._fill(
                        f"WITH gone AS (DELETE FROM {{s}}.{table} WHERE ctid = ANY(ARRAY("
                        f"SELECT ctid FROM {{s}}.{table} WHERE expires_at <= statement_timestamp() "
                        f"LIMIT {_PRUNE_BATCH} FOR UPDATE SKIP LOCKED)) RETURNING 1) "
                        "SELECT count(*) FROM gone"
                    ),
                    {},
                    "pruning expired rows",
                )
                count = int(rows[0][0]) if rows else 0
                total += count
                if count < _PRUNE_BATCH:
                    break
        return total

    async def _prune_forever(self) -> None:
        while True:
            await anyio.sleep(self._settings.prune_interval)
            try:
                await self.prune()
            except ResultBackendError as exc:
                log.warning("pruning expired rows failed (trying again later): %s", exc)
