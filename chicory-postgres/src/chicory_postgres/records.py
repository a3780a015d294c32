"""The records face of the PostgreSQL result backend: store, read, wait for and forget task
records.

A record is one row of ``results`` (upserted; nothing replaces a live final record). A waiter
is woken by the ``NOTIFY`` its final record sends (see
:class:`~chicory_postgres.results_base.ResultBackendBase`), or reads its row every
``poll_interval`` while no LISTEN connection is up.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from chicory.backend import StoredResult
from chicory_postgres.results_base import ResultBackendBase

__all__ = ["RecordMethods"]


class RecordMethods(ResultBackendBase):
    """The record methods of :class:`~chicory_postgres.results.PostgresResultBackend`."""

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
