"""Raising an exception inside a running coroutine, and waiting on a future without cancelling it.

What the soft time limit of an async task (:mod:`chicory.timelimits`) is built on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["Interruptible", "wait_within"]


async def wait_within(future: asyncio.Future[Any], seconds: float) -> bool:
    """Wait up to ``seconds`` for ``future`` without cancelling it; return whether it is done."""
    if not future.done() and seconds > 0:
        await asyncio.wait((future,), timeout=seconds)
    return future.done()


class Interruptible:
    """Awaits a coroutine, and can raise an exception inside it at its current ``await``.

    asyncio can only throw ``CancelledError`` into a task. :meth:`interrupt` cancels the task
    running this awaitable and, when that cancellation reaches this frame, throws the given
    exception into the wrapped coroutine instead (and takes the cancellation back): the
    task's code sees :class:`~chicory.errors.TaskSoftTimeoutError` where it awaited, and may
    go on awaiting while it cleans up. Any other cancellation passes through unchanged.

    Args:
        coro: The task function's coroutine.
    """

    __slots__ = ("_coro", "_pending", "_task", "done")

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self._coro = coro
        self._pending: BaseException | None = None
        self._task: asyncio.Task[Any] | None = None
        self.done = False

    def interrupt(self, exc: BaseException) -> None:
        """Raise ``exc`` inside the coroutine at its current ``await`` (if it still runs)."""
        if self.done or self._task is None or self._pending is not None:
            return
        self._pending = exc
        self._task.cancel()

    def __await__(self) -> Generator[Any, Any, Any]:
        self._task = asyncio.current_task()
        coro = self._coro
        sent: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                try:
                    if thrown is not None:
                        exc, thrown = thrown, None
                        yielded = coro.throw(exc)
                    else:
                        yielded = coro.send(sent)
                except StopIteration as stop:
                    return stop.value
                try:
                    sent = yield yielded
                except asyncio.CancelledError as exc:
                    pending, self._pending = self._pending, None
                    if pending is not None and self._task is not None:
                        self._task.uncancel()  # ours: delivered as ``pending`` instead
                        thrown = pending
                    else:
                        thrown = exc
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:
                    thrown = exc
        finally:
            self.done = True
