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

This module is the facade: connecting, progress, heartbeats, group joins and pruning; records
and waiters are in :mod:`chicory_postgres.records`, revocations in
:mod:`chicory_postgres.revoking`, on the shared state of :mod:`chicory_postgres.results_base`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, Self

import anyio

from chicory.errors import ResultBackendError
from chicory_postgres import joins, progress
from chicory_postgres.config import PostgresSettings, parse_settings
from chicory_postgres.connection import Listener, open_pool, results_errors
from chicory_postgres.records import RecordMethods
from chicory_postgres.revoking import RevocationMethods
from chicory_postgres.statements import TTL

__all__ = ["PostgresResultBackend"]

log = logging.getLogger("chicory.postgres")

_PRUNE_BATCH = 5000


class PostgresResultBackend(RecordMethods, RevocationMethods):
    """Task records in PostgreSQL, waiters woken by LISTEN/NOTIFY.

    Args:
        settings: Connection and behaviour settings.
    """

    def __init__(self, settings: PostgresSettings | None = None) -> None:
        super().__init__(settings)
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

    # -- heartbeats ------------------------------------------------------------------------

    async def heartbeat(self, worker_id: str, data: bytes, *, ttl: float) -> None:
        """Record that ``worker_id`` is alive for ``ttl`` seconds."""
        await self._rows(
            self._fill(
                "INSERT INTO {s}.workers (worker_id, data, expires_at) "
                "VALUES (%(id)s, %(data)s, " + TTL + ") ON CONFLICT (worker_id) DO UPDATE "
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
