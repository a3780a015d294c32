"""A worker's copy of the live revocation records, kept fresh by pushes (:mod:`chicory.revocation`).

:class:`RevocationFeed` runs in the worker's background task group: it subscribes to the
result backend's pushes, then loads every live record, and reloads them every
:data:`~chicory.revocation.RESYNC_SECONDS`. Each new revocation goes into ``revoked`` (what
the job runner looks task ids up in before it starts them) and to ``on_revoked`` (which
cancels the task if it is running here). A backend without revocation records leaves the
set empty for good: the check before each task is then one test of an empty dict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import anyio
from anyio.abc import TaskStatus

from chicory.backend import ResultBackend
from chicory.clock import SystemClock
from chicory.revocation import RESYNC_SECONDS, Revocations

__all__ = ["RevocationFeed"]

log = logging.getLogger("chicory.worker")


class RevocationFeed:
    """Feeds ``revoked`` from a result backend's revocation records.

    Args:
        backend: The app's result backend.
        revoked: The dict to keep filled: task id -> expiry (seconds since the epoch).
        on_revoked: Called with each task id newly revoked.
        resync: Seconds between full reloads.
    """

    def __init__(
        self,
        backend: ResultBackend,
        revoked: dict[str, float],
        on_revoked: Callable[[str], None],
        *,
        resync: float = RESYNC_SECONDS,
    ) -> None:
        self._backend = backend
        self.revoked = revoked
        self._on_revoked = on_revoked
        self._resync = resync
        self._clock = SystemClock()

    @property
    def supported(self) -> bool:
        """Whether the backend stores revocation records."""
        return isinstance(self._backend, Revocations)

    def add(self, task_id: str, expires_at: float) -> None:
        """Take in one revocation (a push, or one found by a reload)."""
        known = self.revoked.get(task_id)
        self.revoked[task_id] = max(expires_at, known or 0.0)
        if known is None:
            self._on_revoked(task_id)

    def replace(self, fresh: dict[str, float]) -> None:
        """Take in a full reload: drop expired records, add (and act on) new ones.

        A record is never dropped for missing from ``fresh``: a push may have come in after
        the read that ``fresh`` is (records are only ever added, or expire).
        """
        now = self._clock.time()
        for task_id in [t for t, at in self.revoked.items() if at <= now]:
            del self.revoked[task_id]
        for task_id, expires_at in fresh.items():
            if expires_at > now:
                self.add(task_id, expires_at)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Subscribe, load, and follow pushes until cancelled; reconnect after a failure.

        Reports started (``task_status``) once the first load is done, so a worker that
        waits for that runs no task revoked before it started; or once that first attempt
        failed (logged: the worker then starts without the records it could not read).
        """
        backend = self._backend
        if not isinstance(backend, Revocations):
            log.debug("result backend %r keeps no revocation records", backend)
            task_status.started()
            return
        pause = 0.5
        started = False
        while True:
            try:
                async with backend.watch_revocations() as pushes, anyio.create_task_group() as tg:
                    self.replace(await backend.revocations())
                    if not started:
                        started = True
                        task_status.started()
                    tg.start_soon(self._reload_loop, backend)
                    async for task_id, expires_at in pushes:
                        self.add(task_id, expires_at)
                    tg.cancel_scope.cancel()
                pause = 0.5
            except Exception as exc:
                log.warning(
                    "following revocations failed (%s); subscribing again in %.1f s", exc, pause
                )
            if not started:
                started = True
                task_status.started()
            await anyio.sleep(pause)
            pause = min(pause * 2, 10.0)

    async def _reload_loop(self, backend: Revocations) -> None:
        while True:
            await anyio.sleep(self._resync)
            self.replace(await backend.revocations())
