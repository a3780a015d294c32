"""The supervisor of ``chicory worker --processes N``: starts, restarts, recycles, stops children.

- **Start**: N children with the ``spawn`` start method (:mod:`chicory.processes.child`).
- **A child dies** (a crash, an OOM kill, SIGKILL): logged with why (its exit code or the
  signal that killed it) and replaced after a back-off: 0.5 s, doubling up to 30 s, back to
  0.5 s once a child of that slot reports ready. The other children keep working.
- **Crashing at start**: when a slot's child exits before it reports ready
  :data:`START_FAILURES` times in a row (an import error, an unreachable broker), the
  supervisor stops every child and exits with status 1.
- **Recycled** (exit code :data:`~chicory.processes.child.RECYCLED`): replaced at once.
- **SIGTERM or SIGINT**: forwarded to every child as SIGTERM (each drains, see
  :mod:`chicory.processes.child`); the supervisor exits once all have, with status 0. A
  second signal is forwarded too: the children stop at once, handing running work back.
- **--reload**: when a ``.py`` file under the watched directories changes, every child is
  drained and replaced (see :mod:`chicory.processes.reload`; for development only).
- **--scheduler**: the supervisor itself runs the one scheduler, in a thread of its own
  (:mod:`chicory.processes.scheduling`), from start to stop, whatever happens to the
  children. A scheduler that ends on its own (its broker cannot make unique enqueues) stops
  the supervisor as a crash at start does, with status 1.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Final

import attrs

from chicory.processes.child import RECYCLED, ChildConfig, child_main

if TYPE_CHECKING:
    from chicory.processes.scheduling import SchedulerThread
    from chicory.scheduling.runner import Scheduler

__all__ = ["START_FAILURES", "Supervisor"]

log = logging.getLogger("chicory.processes")

START_FAILURES: Final = 5
"""Children of one slot that may exit before reporting ready, in a row, before giving up."""

FIRST_BACKOFF: Final = 0.5
MAX_BACKOFF: Final = 30.0


@attrs.define
class _Slot:
    index: int
    process: BaseProcess | None = None
    conn: Connection | None = None
    ready: bool = False
    worker_id: str = ""
    failures: int = 0
    backoff: float = FIRST_BACKOFF
    restart_at: float | None = None
    restarting: bool = False  # stopped on purpose (reload): replace at once


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "is still running"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class Supervisor:
    """Runs ``processes`` worker children for one app (see the module docstring).

    Args:
        config: What each child starts.
        processes: How many children run at once.
        reload_paths: Directories whose ``.py`` files restart the children when they change
            (``--reload``); empty for none.
        start_failures: See :data:`START_FAILURES`.
        scheduler: A scheduler of the app to run in this process while it supervises
            (``--scheduler``); ``None`` for none.
    """

    def __init__(
        self,
        config: ChildConfig,
        *,
        processes: int = 1,
        reload_paths: Sequence[str] = (),
        start_failures: int = START_FAILURES,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.config = config
        self.processes = processes
        self.reload_paths = list(reload_paths)
        self.start_failures = start_failures
        self._context = multiprocessing.get_context("spawn")
        self._slots = [_Slot(index=i + 1) for i in range(processes)]
        self._signals = 0
        self._handled = 0
        self._giving_up = False
        self._reload_requested: Callable[[], bool] = lambda: False
        self._scheduler: SchedulerThread | None = None
        if scheduler is not None:
            from chicory.processes.scheduling import SchedulerThread

            self._scheduler = SchedulerThread(scheduler)

    def run(self) -> int:
        """Supervise until stopped; return the exit status (0, or 1 after crashes at start)."""
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        watcher = None
        try:
            if self.reload_paths:
                from chicory.processes.reload import ReloadWatcher

                watcher = ReloadWatcher(self.reload_paths)
                watcher.start()
                self._reload_requested = watcher.changed
            log.info(
                "supervisor (pid %d) starting %d worker process(es) for %s",
                multiprocessing.current_process().pid,
                self.processes,
                self.config.app,
            )
            for slot in self._slots:
                self._start(slot)
            if self._scheduler is not None:
                self._scheduler.start()
            return self._loop()
        finally:
            if self._scheduler is not None:
                self._scheduler.stop()
            if watcher is not None:
                watcher.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals += 1

    def _loop(self) -> int:
        status = 0
        while True:
            if self._signals > self._handled:
                self._handled = self._signals
                self._forward_stop()
            if self._handled == 0 and self._reload_requested():
                log.warning("sources changed: restarting the worker processes")
                for slot in self._slots:
                    slot.restarting = True
                    self._terminate(slot)
            if self._scheduler_ended():
                status = 1
            live = [s for s in self._slots if s.process is not None]
            if not live and (self._handled or status):
                return status
            waitables: list[object] = []
            for slot in live:
                assert slot.process is not None
                waitables.append(slot.process.sentinel)
                if slot.conn is not None:
                    waitables.append(slot.conn)
            wait(waitables, timeout=0.25)  # type: ignore[arg-type]
            now = time.monotonic()
            for slot in self._slots:
                self._read(slot)
                exited = slot.process is not None and not slot.process.is_alive()
                if exited and self._reap(slot, now):
                    status = 1
                if (
                    slot.process is None
                    and slot.restart_at is not None
                    and now >= slot.restart_at
                    and not self._handled
                    and not status
                ):
                    self._start(slot)

    def _scheduler_ended(self) -> bool:
        """Whether the scheduler ended on its own just now (then every child is stopped)."""
        scheduler = self._scheduler
        if scheduler is None or self._giving_up or (error := scheduler.error()) is None:
            return False
        log.error(
            "the scheduler stopped: %s: %s; stopping the worker processes",
            type(error).__name__,
            error,
        )
        self._giving_up = True
        self._forward_stop()
        return True

    def _start(self, slot: _Slot) -> None:
        receive, send = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=child_main,
            args=(self.config, send, slot.index),
            name=f"chicory-worker-{slot.index}",
        )
        process.start()
        send.close()
        slot.process, slot.conn = process, receive
        slot.ready, slot.restart_at, slot.restarting = False, None, False
        log.info("started worker process %d (pid %s)", slot.index, process.pid)

    def _read(self, slot: _Slot) -> None:
        conn = slot.conn
        while conn is not None:
            try:
                if not conn.poll():
                    return
                message = conn.recv()
            except (EOFError, OSError):
                conn.close()
                slot.conn = conn = None
                return
            if isinstance(message, tuple) and message and message[0] == "ready":
                slot.ready, slot.failures, slot.backoff = True, 0, FIRST_BACKOFF
                slot.worker_id = str(message[1])

    def _reap(self, slot: _Slot, now: float) -> bool:
        """Handle the exit of ``slot``'s child; return True if the supervisor must give up."""
        process = slot.process
        assert process is not None
        process.join()
        code = process.exitcode
        if slot.conn is not None:
            slot.conn.close()
        slot.process, slot.conn = None, None
        what = f"worker process {slot.index} (pid {process.pid}, {slot.worker_id or 'not ready'})"
        if self._handled or self._giving_up:
            log.info("%s %s", what, _describe_exit(code))
            return False
        if code == RECYCLED or slot.restarting:
            why = "was recycled" if code == RECYCLED else "stopped for the reload"
            log.info("%s %s; starting a fresh one", what, why)
            slot.restart_at = now
            return False
        if not slot.ready:
            slot.failures += 1
            if slot.failures >= self.start_failures:
                log.error(
                    "%s %s before it was ready, %d times in a row: giving up (see its log "
                    "above for why)",
                    what,
                    _describe_exit(code),
                    slot.failures,
                )
                self._giving_up = True
                self._forward_stop()
                return True
        log.error("%s %s; starting another in %.1f s", what, _describe_exit(code), slot.backoff)
        slot.restart_at = now + slot.backoff
        slot.backoff = min(slot.backoff * 2, MAX_BACKOFF)
        return False

    def _forward_stop(self) -> None:
        log.warning(
            "stopping %d worker process(es)%s",
            sum(1 for s in self._slots if s.process is not None),
            "" if self._handled <= 1 else " now (running tasks are handed back)",
        )
        if self._scheduler is not None:
            self._scheduler.request_stop()
        for slot in self._slots:
            self._terminate(slot)

    def _terminate(self, slot: _Slot) -> None:
        process = slot.process
        if process is not None and process.is_alive() and process.pid is not None:
            process.terminate()  # SIGTERM: the child drains
