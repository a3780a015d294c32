"""The revocations face of the PostgreSQL result backend
(:class:`chicory.revocation.Revocations`): record, list and watch cancelled task ids.

The statements are in :mod:`chicory_postgres.revocations`; a revocation is pushed with
``NOTIFY <schema>_revocations`` to the watchers of every connected backend (see
:class:`~chicory_postgres.results_base.ResultBackendBase`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC

import anyio

from chicory.errors import ResultBackendError
from chicory_postgres import revocations
from chicory_postgres.results_base import ResultBackendBase

__all__ = ["RevocationMethods"]


class RevocationMethods(ResultBackendBase):
    """The revocation methods of :class:`~chicory_postgres.results.PostgresResultBackend`."""

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
