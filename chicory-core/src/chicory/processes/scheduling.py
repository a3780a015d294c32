"""The scheduler of ``chicory worker --processes N --scheduler``, run by the supervisor.

A supervisor runs exactly one :class:`~chicory.scheduling.runner.Scheduler`, in a thread of
its own with an event loop of its own (an anyio blocking portal), beside the loop that
watches the children. Not in a child, because children come and go: one that crashes,
is killed, recycled or reloaded would take the scheduler with it until its replacement was
ready (after a back-off of up to 30 s for a child that keeps crashing), and a slot's
identity is no lease anyone could hold. The supervisor stays for as long as the worker
does, so the scheduler fires on however the children fare.

Firing stays a unique enqueue (:mod:`chicory.unique`), so a scheduler elsewhere (another
supervisor, a ``chicory scheduler``) never doubles a fire either. The children are started
with ``spawn``, so this thread is never copied into a forked process.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Final

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

if TYPE_CHECKING:
    from chicory.scheduling.runner import Scheduler

__all__ = ["STOP_SECONDS", "SchedulerThread"]

log = logging.getLogger("chicory.scheduler")

STOP_SECONDS: Final = 10.0
"""How long the scheduler may take to stop (its fire in progress, closing the app)."""


class SchedulerThread:
    """Runs ``scheduler`` in a thread and event loop of its own until :meth:`stop`.

    Args:
        scheduler: The scheduler to run; its app is closed on that loop when it stops.
    """

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self._context: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self._future: Future[None] | None = None

    def start(self) -> None:
        """Start the thread and the scheduler in it (returns at once)."""
        self._context = start_blocking_portal(name="chicory-scheduler")
        self._portal = self._context.__enter__()
        self._future = self._portal.start_task_soon(self._run)

    async def _run(self) -> None:
        try:
            await self.scheduler.run()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_SECONDS / 2):
                await self.scheduler.app.close()

    def error(self) -> BaseException | None:
        """What ended the scheduler, if it ended on its own (it cannot make unique
        enqueues, say); ``None`` while it runs or after a requested stop."""
        future = self._future
        if future is None or not future.done() or future.cancelled():
            return None
        return future.exception()

    def request_stop(self) -> None:
        """Ask the scheduler to stop after the fire in progress, if any (returns at once)."""
        portal, future = self._portal, self._future
        if portal is not None and future is not None and not future.done():
            with contextlib.suppress(RuntimeError):  # the portal's loop has stopped already
                portal.call(self.scheduler.stop)

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """Stop the scheduler and its thread, waiting at most about ``timeout`` seconds
        before cancelling a fire that hangs."""
        future, context = self._future, self._context
        if future is None or context is None:
            return
        self.request_stop()
        try:
            future.result(timeout)
        except TimeoutError:
            log.warning("the scheduler did not stop within %.0f s: cancelling it", timeout)
            future.cancel()
        except BaseException:  # reported by error(); stopping goes on
            pass
        self._future = self._context = self._portal = None
        context.__exit__(None, None, None)
