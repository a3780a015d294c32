"""The revocation records of the memory result backend (:mod:`chicory.revocation`).

``_revoked`` maps a task id to the expiry of its revocation record (``AsyncResult.cancel()``);
expired records are dropped when the next one is recorded, and never listed. ``_watchers``
are the streams of ``watch_revocations()`` subscriptions: each new revocation is sent to
every one of them at once, and closing the backend closes them (their iterators end).

:class:`RevocationMethods` is a mixin of :class:`~chicory_memory.results.MemoryResultBackend`,
which creates that state; no method awaits while it changes that state, so each change
is atomic.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from chicory.clock import Clock

__all__ = ["RevocationMethods"]


class RevocationMethods:
    """The revocation-record methods of :class:`~chicory_memory.results.MemoryResultBackend`."""

    _clock: Clock
    _revoked: dict[str, float]
    _watchers: set[MemoryObjectSendStream[tuple[str, float]]]

    if TYPE_CHECKING:

        def _check_connected(self) -> None: ...

    async def revoke(self, task_id: str, *, ttl: float) -> None:
        """Record that ``task_id`` is cancelled for ``ttl`` seconds; tell every watcher now.

        Raises:
            ResultBackendError: the backend is not connected.
            ValueError: ``ttl`` is not a positive number.
        """
        self._check_connected()
        if not ttl > 0 or math.isinf(ttl):
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        now = self._clock.time()
        self._revoked = {k: v for k, v in self._revoked.items() if v > now}
        expires_at = now + ttl
        self._revoked[task_id] = max(expires_at, self._revoked.get(task_id, 0.0))
        for watcher in list(self._watchers):
            try:
                watcher.send_nowait((task_id, self._revoked[task_id]))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._watchers.discard(watcher)

    async def revocations(self) -> dict[str, float]:
        """Every live revocation record: task id -> expiry (the clock's seconds).

        Raises:
            ResultBackendError: the backend is not connected.
        """
        self._check_connected()
        now = self._clock.time()
        return {task_id: at for task_id, at in self._revoked.items() if at > now}

    @asynccontextmanager
    async def watch_revocations(self) -> AsyncIterator[AsyncIterator[tuple[str, float]]]:
        """Subscribe to new revocations: ``(task_id, expires_at)`` as each is recorded.

        The iterator ends when the backend is closed.

        Raises:
            ResultBackendError: the backend is not connected.
        """
        self._check_connected()
        send, receive = anyio.create_memory_object_stream[tuple[str, float]](math.inf)
        self._watchers.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._watchers.discard(send)
            send.close()

    def _close_revocation_watchers(self) -> None:
        """End every ``watch_revocations()`` subscription (the backend is closing)."""
        for watcher in self._watchers:
            watcher.close()
        self._watchers.clear()
