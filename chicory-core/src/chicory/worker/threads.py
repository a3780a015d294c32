"""Sync task functions in threads that can be told to stop, and that never outlive the process.

A sync task runs in a thread of the worker's :class:`SyncThreads`; the runner that started it
waits until the thread has *ended*, whatever happens, so a run that overruns its time limit
keeps its runner slot (no new work starts there) and its retry is sent only after it is over:
the retry can never run beside it. The trade-off, and what the worker does at each limit, is
in :mod:`chicory.timelimits`.

Why not ``anyio.to_thread`` or :class:`concurrent.futures.ThreadPoolExecutor`: both use
non-daemon threads, which the interpreter joins at exit, so one task stuck in a thread keeps
a stopping worker process alive for as long as it is stuck. These threads are daemon threads:
when the worker process exits, a stuck call ends with it (like a process killed mid-task).

:meth:`ThreadCall.interrupt` raises an exception *inside* the thread
(``PyThreadState_SetAsyncExc``, the CPython call other task queues use for their time limits):
Python code stops at its next line; a thread blocked in C (``time.sleep``, a socket read)
sees it only when that call returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import threading
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any

__all__ = ["SyncThreads", "ThreadCall"]

log = logging.getLogger("chicory.worker")

_WAITING, _RUNNING, _DONE = 0, 1, 2


def _raise_in(ident: int, exc_type: type[BaseException] | None) -> int:
    """Raise ``exc_type`` in thread ``ident`` at its next line (``None``: clear a pending one)."""
    exc = ctypes.py_object(exc_type) if exc_type is not None else None
    return int(ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), exc))


class ThreadCall:
    """One call of a sync function in a worker thread; its outcome arrives on ``future``.

    Args:
        fn: The function, with its arguments bound.
        loop: The event loop that awaits ``future``.
    """

    __slots__ = ("_fn", "_ident", "_lock", "_loop", "_state", "future", "interrupted")

    def __init__(self, fn: Callable[[], Any], loop: asyncio.AbstractEventLoop) -> None:
        self._fn = fn
        self._loop = loop
        self._lock = threading.Lock()
        self._state = _WAITING
        self._ident = 0
        self.future: asyncio.Future[Any] = loop.create_future()
        self.interrupted: type[BaseException] | None = None
        """The last exception :meth:`interrupt` raised in the thread, if any."""

    def interrupt(self, exc_type: type[BaseException]) -> bool:
        """Raise ``exc_type`` (a class, built without arguments) in the thread, if the function
        is still running; return whether it was."""
        with self._lock:
            if self._state != _RUNNING:
                return False
            self.interrupted = exc_type
            _raise_in(self._ident, exc_type)
            return True

    def run(self) -> None:
        """Call the function (in the worker thread) and report its outcome to the loop."""
        value: Any = None
        error: BaseException | None = None
        try:
            try:
                with self._lock:
                    self._ident = threading.get_ident()
                    self._state = _RUNNING
                value = self._fn()
            except BaseException as exc:
                error = exc
            finally:
                self._finish()
        except BaseException as late:  # an interruption that landed as the function ended
            self._finish()
            error = error or late
        with contextlib.suppress(RuntimeError):  # RuntimeError: the loop closed, nobody waits
            self._loop.call_soon_threadsafe(self._report, value, error)

    def _finish(self) -> None:
        with self._lock:
            if self._state == _RUNNING and self.interrupted is not None:
                _raise_in(self._ident, None)  # one asked for but not yet raised: drop it
            self._state = _DONE

    def _report(self, value: Any, error: BaseException | None) -> None:
        if self.future.done():  # the awaiting runner was cancelled
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(value)


class SyncThreads:
    """Daemon threads for sync task functions, started as needed and reused.

    How many run at once is bounded by the caller (the worker's ``sync_threads`` limiter).
    """

    def __init__(self) -> None:
        self._idle: list[SimpleQueue[ThreadCall | None]] = []
        self._lock = threading.Lock()
        self._started = 0

    @property
    def started(self) -> int:
        """Threads started so far."""
        return self._started

    def submit(self, call: ThreadCall) -> None:
        """Run ``call`` in an idle thread, or in a new one."""
        with self._lock:
            inbox = self._idle.pop() if self._idle else None
        if inbox is None:
            inbox = SimpleQueue()
            self._started += 1
            thread = threading.Thread(
                target=self._serve,
                args=(inbox,),
                name=f"chicory-sync-{self._started}",
                daemon=True,
            )
            thread.start()
        inbox.put(call)

    def close(self) -> None:
        """Let the idle threads end (busy ones end when their call returns)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for inbox in idle:
            inbox.put(None)

    def _serve(self, inbox: SimpleQueue[ThreadCall | None]) -> None:
        while True:
            call = inbox.get()
            if call is None:
                return
            try:
                call.run()
            except BaseException:  # never let a late interruption end the thread's loop
                log.debug("a sync task's thread was interrupted after its call", exc_info=True)
            del call
            with self._lock:
                self._idle.append(inbox)
