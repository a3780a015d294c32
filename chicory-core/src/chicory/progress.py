"""Progress pushed to waiters: the result-backend power behind ``get(on_progress=...)``.

A task reports progress with ``ctx.set_progress`` (:class:`~chicory.context.TaskContext`);
the worker stores it as the task's non-final record. A result backend that implements
:class:`ProgressFeed` also pushes each such record to the subscribers of that task id, so a
caller awaiting ``result.get(on_progress=callback)`` sees every report as it is written,
without polling. The memory and Redis backends do (Redis: a ``PUBLISH`` on a channel per
task, in the same script as the write); the conformance suite's ``ProgressFeedSuite``
checks a plugin's. On another backend, ``get(on_progress=...)`` raises
:class:`~chicory.errors.CapabilityError`, and ``await result.progress()`` reads the last
report on demand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Protocol, runtime_checkable

from chicory.backend import ResultBackend
from chicory.errors import CapabilityError

__all__ = ["ProgressFeed", "feed_of"]


@runtime_checkable
class ProgressFeed(Protocol):
    """A result backend that pushes progress records to subscribers.

    Every method may raise :class:`~chicory.errors.ResultBackendError` when the backend
    cannot be reached, and may be cancelled.
    """

    async def store_progress(self, task_id: str, data: bytes, *, ttl: float) -> None:
        """Store ``data`` as the non-final record of ``task_id`` (as ``store(...,
        final=False)`` does: never over a final record) and push it to every subscriber of
        ``task_id`` if it was stored."""
        ...

    def watch_progress(self, task_id: str) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Subscribe to the progress records of ``task_id``.

        Entering the context subscribes (every ``store_progress`` of that id from then on
        is delivered, in order); the iterator yields each record's bytes. It may end or
        raise when the connection drops.
        """
        ...


def feed_of(backend: ResultBackend, *, needed_for: str) -> ProgressFeed:
    """Return ``backend`` as a :class:`ProgressFeed`, or say why it is not one.

    Raises:
        CapabilityError: the backend does not push progress.
    """
    if not isinstance(backend, ProgressFeed):
        raise CapabilityError(
            f"{needed_for} needs a result backend that pushes progress, and {backend!r} "
            "does not (it lacks store_progress/watch_progress); read the last report with "
            "'await result.progress()' instead, or use the memory:// or redis:// backend"
        )
    return backend
