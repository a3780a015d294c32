"""The blocking API: Chicory from synchronous code, in any thread of any process.

Every producer call of a task has a blocking twin under :attr:`Task.blocking
<chicory.task.Task.blocking>`, with the same name and arguments::

    result = add.blocking.delay(2, 3)  # returns once the message is enqueued
    result.get(timeout=10)  # a BlockingResult: returns once the result is there

Two faces, one implementation, as in httpx (``Client`` / ``AsyncClient``) and redis-py
(``redis`` / ``redis.asyncio``): the async face is the implementation, and the blocking face
runs it on an event loop and waits. Which call blocks is in the name: everything reached
through ``.blocking`` (a :class:`BlockingTask`, a :class:`BlockingResult`) blocks, everything
else is awaited. A hidden event loop per call (``asyncio.run`` inside ``delay()``) would
open and close connections on every call; a hidden portal behind the same names as the
async API would make a forgotten ``await`` silently block a server's loop.

Where blocking calls run:

* On the **app's own event loop** when it is connected on a loop that runs in another thread
  (a FastAPI or Starlette server whose sync endpoints run in a thread pool, say): the call
  is handed to that loop, so both faces share one set of connections.
* Otherwise on the **portal**: one daemon thread per process running one event loop (an
  anyio ``BlockingPortal``), started by the first blocking call. Apps used there are
  connected there once and shared by every thread.
* Never from inside a running event loop: that would stall it, so it raises
  :class:`~chicory.errors.BlockingCallError` (``await`` the async API there instead).

Lifecycle: the portal stops at interpreter exit, closing the apps connected on it (pending
single publishes are sent first). A forked child (a gunicorn or uwsgi worker, a
``multiprocessing`` fork) starts a portal of its own on its first call, and its apps open
connections of their own (see :mod:`chicory.loops`); the parent's are never touched.
Interrupting a blocked call (``KeyboardInterrupt``) cancels what it was waiting for.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import Future
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from chicory.errors import BlockingCallError
from chicory.loops import KEPT_AFTER_FORK, alive_elsewhere, bound_apps, running_loop
from chicory.records import ResultRecord, TaskState
from chicory.result import AsyncResult

if TYPE_CHECKING:
    from chicory.app import Chicory
    from chicory.task import Task

__all__ = ["BlockingResult", "BlockingTask", "call", "close", "portal_thread"]

log = logging.getLogger("chicory")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

STOP_SECONDS = 10.0
"""How long stopping the portal at exit may take (closing apps included)."""


class _Portal:
    """The process-wide portal thread and its event loop, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._portal: BlockingPortal | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def get(self) -> BlockingPortal:
        portal = self._portal
        if portal is None:
            with self._lock:
                if self._portal is None:
                    self._start()
                portal = self._portal
        assert portal is not None
        return portal

    def _start(self) -> None:
        started = threading.Event()
        failure: list[BaseException] = []

        async def serve() -> None:
            async with BlockingPortal() as portal:
                self._portal, self._loop = portal, asyncio.get_running_loop()
                started.set()
                await portal.sleep_until_stopped()

        def run() -> None:
            try:
                # asyncio.run shuts the loop's async generators down: apps connected here
                # close themselves then (see chicory.loops).
                asyncio.run(serve())
            except BaseException as exc:  # pragma: no cover - reported to the caller
                failure.append(exc)
            finally:
                started.set()

        thread = threading.Thread(target=run, name="chicory-blocking-portal", daemon=True)
        thread.start()
        started.wait()
        if failure:  # pragma: no cover - the loop failed to start
            raise RuntimeError("the blocking portal's event loop failed to start") from failure[0]
        self._thread = thread

    def stop(self) -> None:
        """Close the apps connected here (sending what they collected), stop the loop and
        wait for the thread, bounded."""
        with self._lock:
            portal, loop, thread = self._portal, self._loop, self._thread
            self._portal = self._loop = self._thread = None
        if portal is None or thread is None:
            return
        with contextlib.suppress(Exception):  # a loop that is gone, an app that cannot close
            portal.call(_close_apps_of, loop)
        with contextlib.suppress(RuntimeError):  # already stopped
            portal.call(portal.stop)
        thread.join(STOP_SECONDS)

    def forget(self) -> None:
        """In a forked child: the thread is gone; never touch what it left (see loops)."""
        KEPT_AFTER_FORK.append((self._portal, self._loop, self._thread))
        self._lock = threading.Lock()  # another thread may have held it at the fork
        self._portal = self._loop = self._thread = None


async def _close_apps_of(loop: asyncio.AbstractEventLoop | None) -> None:
    """Close every app connected on ``loop`` (run on that loop), bounded in time."""
    with anyio.move_on_after(STOP_SECONDS / 2):
        for app in bound_apps():
            if app._home.loop is loop:
                try:
                    await app.close()
                except Exception:
                    log.exception("closing %r at exit failed", app)


_PORTAL = _Portal()
atexit.register(_PORTAL.stop)
os.register_at_fork(after_in_child=_PORTAL.forget)


def portal_thread() -> threading.Thread | None:
    """The portal's thread in this process, or ``None`` before the first blocking call."""
    return _PORTAL.thread


def call(app: Chicory, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any, **kwargs: Any) -> T:
    """Run ``await fn(*args, **kwargs)`` on the event loop of ``app`` and return its result.

    The loop is the app's own if it is connected on a loop running in another thread, else
    the process's portal (started on first use). Use it for any coroutine of the async API
    that has no blocking twin, e.g. ``call(app, broker_counts, "default")``.

    Raises:
        BlockingCallError: called from a thread that runs an event loop (anything ``fn``
            raises is raised as it is).
    """
    if running_loop() is not None:
        raise BlockingCallError(
            f"{getattr(fn, '__qualname__', fn)!s} was called through the blocking API from "
            "inside a running event loop, which it would stall; await the async API here "
            "instead (await task.delay(...), await result.get(...))"
        )
    target: Callable[[], Coroutine[Any, Any, T]] = functools.partial(fn, *args, **kwargs)
    home = app._home.loop
    future: Future[T]
    if home is not None and home is not _PORTAL.loop and alive_elsewhere(home):
        future = asyncio.run_coroutine_threadsafe(target(), home)
    else:
        future = _PORTAL.get().start_task_soon(target)
    try:
        return future.result()
    except BaseException:
        future.cancel()  # interrupted (KeyboardInterrupt): stop what it waited for
        raise


def close(app: Chicory) -> None:
    """Close ``app``'s connections from synchronous code (on the loop that holds them)."""
    call(app, app.close)


class BlockingResult(Generic[T]):
    """The blocking face of an :class:`~chicory.result.AsyncResult`: every method blocks.

    Args:
        result: The async handle it wraps.
    """

    __slots__ = ("async_result",)

    def __init__(self, result: AsyncResult[T]) -> None:
        self.async_result = result

    def __repr__(self) -> str:
        return repr(self.async_result).replace("<AsyncResult", "<BlockingResult", 1)

    @property
    def id(self) -> str:
        """The task's id."""
        return self.async_result.id

    @property
    def duplicate(self) -> bool:
        """Whether its unique enqueue found the key held (``id`` is the holder's run)."""
        return self.async_result.duplicate

    def get(self, timeout: float | None = None) -> T:
        """Block until the task finished and return its value.

        Args:
            timeout: Seconds to wait; ``None`` waits forever.

        Raises:
            TaskFailedError: the task failed.
            TimeoutError: no final result arrived within ``timeout``.
            ConfigurationError: the task was declared with ``ignore_result=True``.
        """
        return call(self.async_result._app, self.async_result.get, timeout)

    def info(self) -> ResultRecord | None:
        """The task's current record, or ``None`` while it is ``PENDING``."""
        return call(self.async_result._app, self.async_result.info)

    def state(self) -> TaskState:
        """The task's current state (``PENDING`` when no record exists)."""
        return call(self.async_result._app, self.async_result.state)

    def ready(self) -> bool:
        """Whether the task has finished (succeeded or failed)."""
        return call(self.async_result._app, self.async_result.ready)

    def failed(self) -> bool:
        """Whether the task has finished in failure."""
        return call(self.async_result._app, self.async_result.failed)

    def cancel(self, *, ttl: float | None = None) -> None:
        """Cancel the task wherever it is: queued, delayed, retrying or running.

        See :meth:`chicory.result.AsyncResult.cancel`.

        Args:
            ttl: Seconds the revocation is kept (default: the app's ``result_ttl``).

        Raises:
            CapabilityError: the result backend keeps no revocation records.
            ResultBackendError: the result backend could not be reached.
        """
        call(self.async_result._app, self.async_result.cancel, ttl=ttl)

    def forget(self) -> bool:
        """Delete the task's stored record; return whether there was one.

        Raises:
            CapabilityError: the result backend cannot delete records.
            ResultBackendError: the result backend could not be reached.
        """
        return call(self.async_result._app, self.async_result.forget)


class BlockingTask(Generic[P, R]):
    """The blocking face of a :class:`~chicory.task.Task` (``task.blocking``): every method
    blocks until the broker has the message, and returns :class:`BlockingResult` handles.

    Args:
        task: The task it enqueues.
    """

    __slots__ = ("task",)

    def __init__(self, task: Task[P, R]) -> None:
        self.task = task

    def __repr__(self) -> str:
        return f"<BlockingTask {self.task.name}>"

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> BlockingResult[R]:
        """Enqueue one run; see :meth:`Task.delay <chicory.task.Task.delay>`."""
        return BlockingResult(call(self.task.app, self.task.delay, *args, **kwargs))

    def send(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """Enqueue one run, fire-and-forget; return the task id."""
        return call(self.task.app, self.task.send, *args, **kwargs)

    def apply_async(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        queue: str | None = None,
        task_id: str | None = None,
        timeout: float | None = None,
        soft_timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
        unique: bool = False,
        unique_key: str | None = None,
        unique_for: float | timedelta | None = None,
    ) -> BlockingResult[R]:
        """Enqueue one run with per-call options; see :meth:`Task.apply_async
        <chicory.task.Task.apply_async>` (its ``duplicate`` tells a unique enqueue that
        found its key held)."""
        result = call(
            self.task.app,
            self.task.apply_async,
            args,
            kwargs,
            countdown=countdown,
            eta=eta,
            queue=queue,
            task_id=task_id,
            timeout=timeout,
            soft_timeout=soft_timeout,
            headers=headers,
            unique=unique,
            unique_key=unique_key,
            unique_for=unique_for,
        )
        return BlockingResult(result)

    def delay_many(
        self,
        calls: Iterable[Sequence[Any] | Mapping[str, Any]],
        *,
        queue: str | None = None,
        headers: Mapping[str, str] | None = None,
        unique_keys: Sequence[str] | None = None,
        unique_for: float | timedelta | None = None,
    ) -> list[BlockingResult[R]]:
        """Enqueue many runs in one batch; see :meth:`Task.delay_many
        <chicory.task.Task.delay_many>`."""
        results = call(
            self.task.app,
            self.task.delay_many,
            list(calls),
            queue=queue,
            headers=headers,
            unique_keys=unique_keys,
            unique_for=unique_for,
        )
        return [BlockingResult(result) for result in results]

    def result(self, task_id: str) -> BlockingResult[R]:
        """The blocking handle of this task's run ``task_id`` (for example, from a request)."""
        return BlockingResult(AsyncResult(self.task.app, task_id, self.task))
