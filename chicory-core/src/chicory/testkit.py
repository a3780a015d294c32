"""Test helpers for your own tasks: an in-process worker on ``memory://`` and a clock you move.

:class:`LocalWorker` takes an app you already have (the one your tasks are registered on)
and, for the duration of an ``async with`` block, points it at a fresh ``memory://`` broker
and result backend running on a :class:`~chicory.clock.VirtualClock`, with a real
:class:`~chicory.worker.Worker` consuming in the same event loop::

    async with LocalWorker(app) as local:
        result = await charge.delay("order-1", 9.5)
        await local.run_until_idle()  # runs it, its retries and what it enqueued
        assert await result.get(timeout=0) == ...

* :meth:`LocalWorker.run_until_idle` returns when nothing is ready, running or being settled;
  then, if delayed messages remain (a ``countdown``, an ``eta``, a retry's backoff), it moves
  the clock to the earliest one's due time and goes on. A task that retries five times with
  a 60 s backoff is done in milliseconds. ``advance_time=False`` stops at the first delay, and
  ``local.clock.advance(seconds)`` moves time by hand.
* ``eager=True`` makes every ``delay()`` (and ``apply_async``, ``delay_many``, ``send``)
  from outside the worker return only once the worker is idle again: the task, its retries
  and whatever it enqueued have run. It is the same worker, broker and codec as above, so
  arguments are encoded and validated as on the wire, results are stored, and the delivery
  modes' rules apply (an at-most-once task is acked before it runs, an at-least-once one
  after its result is stored; retries, dead letters and failures are recorded).

What neither proves, eager mode least of all: that the code works across processes (imports
on the worker, settings, a shared broker), under concurrency with other producers and
workers, across a crash or a lost lease (redelivery, duplicates under at-least-once), with
real time (a retry fires at once here), or against your database's transactions (an eager
task runs *before* the caller's transaction commits, where a real worker may run before or
after it: enqueue from ``transaction.on_commit`` and test that with a real worker).

:class:`BlockingLocalWorker` is the same for synchronous tests (Django, Flask): it runs on
the blocking API's portal loop (:mod:`chicory.blocking`), so ``task.blocking.delay()`` in the
code under test reaches it.

The app's own broker and backend are closed on entry (they reconnect lazily afterwards) and
put back on exit; the ``memory://`` ones are discarded with everything in them.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import anyio

from chicory.backend import ResultBackend
from chicory.broker import Broker, OutgoingMessage
from chicory.clock import VirtualClock
from chicory.errors import ConfigurationError
from chicory.plugins import BackendKind
from chicory.unique import UniqueClaim
from chicory.worker import Worker

if TYPE_CHECKING:
    from chicory.app import Chicory

__all__ = ["BlockingLocalWorker", "LocalWorker"]

_IN_WORKER: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "chicory_testkit_in_worker", default=False
)
"""True in the local worker's tasks: publishes from tasks do not wait for idleness."""

_QUIET_CHECKS = 2
"""Consecutive quiet observations (a few ms apart) that make the worker idle."""


class LocalWorker:
    """An in-process worker for ``app`` on ``memory://`` with a virtual clock.

    Args:
        app: The app whose tasks to run.
        eager: ``delay()`` from outside the worker returns once the worker is idle again.
        queues: Queues to consume (default: every queue the app's tasks name).
        concurrency: Tasks run at once.
        clock: The clock of the broker and backend (default: a new ``VirtualClock``).
        worker_options: Further keyword options of :class:`~chicory.worker.Worker`.
    """

    def __init__(
        self,
        app: Chicory,
        *,
        eager: bool = False,
        queues: Sequence[str] | None = None,
        concurrency: int = 4,
        clock: VirtualClock | None = None,
        worker_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.app = app
        self.eager = eager
        self.clock = clock if clock is not None else VirtualClock()
        names = queues or sorted({app.default_queue, *(t.queue for t in app.tasks.values())})
        self.queues = tuple(names)
        options: dict[str, Any] = {"heartbeat_interval": 0, "fetch_timeout": 1.0}
        options.update(worker_options or {})
        self.worker = Worker(app, queues=self.queues, concurrency=concurrency, **options)
        self._memory: Any = None
        self._saved: tuple[Broker, ResultBackend, Callable[[], datetime]] | None = None
        self._serving: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<LocalWorker {self.app!r} queues={','.join(self.queues)} eager={self.eager}>"

    async def __aenter__(self) -> Self:
        app = self.app
        await app.close()
        broker, backend = self._memory_pair()
        self._saved = (app.broker, app.backend, app.utcnow)
        self._memory = broker
        app.broker = _EagerBroker(broker, self) if self.eager else broker
        app.backend = backend
        clock = self.clock
        app.utcnow = lambda: datetime.fromtimestamp(clock.time(), UTC)
        try:
            await app.connected_broker()
            await app.connected_backend()
            # A task of its own rather than a task group held open across __aenter__ and
            # __aexit__: async fixtures may set up and tear down in different tasks.
            self._serving = asyncio.get_running_loop().create_task(self._serve())
            started = asyncio.ensure_future(self.worker.wait_started())
            await asyncio.wait({started, self._serving}, return_when=asyncio.FIRST_COMPLETED)
            if not started.done():
                started.cancel()
                await self._serving  # raises why the worker could not start
        except BaseException:
            await self._restore()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        serving, self._serving = self._serving, None
        try:
            if serving is not None:
                self.worker.stop()
                await serving
        finally:
            await self._restore()

    def _memory_pair(self) -> tuple[Broker, ResultBackend]:
        plugins = self.app.plugins
        try:
            broker_spec, url = plugins.resolve(BackendKind.BROKER, "memory://")
            backend_spec, _ = plugins.resolve(BackendKind.RESULT_BACKEND, "memory://")
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"LocalWorker runs tasks on memory://, which is not installed: {exc} "
                "(pip install chicory-memory)"
            ) from exc
        broker: Broker = broker_spec.load_factory()(url, clock=self.clock)
        backend: ResultBackend = backend_spec.load_factory()(url, clock=self.clock)
        return broker, backend

    async def _serve(self) -> None:
        _IN_WORKER.set(True)  # this task's context, and so the worker's tasks'
        await self.worker.serve()

    async def _restore(self) -> None:
        app = self.app
        try:
            await app.close()
        finally:
            if self._saved is not None:
                app.broker, app.backend, app.utcnow = self._saved
                self._saved = None

    # -- running -----------------------------------------------------------------------------

    async def run_until_idle(self, *, advance_time: bool = True, timeout: float = 30.0) -> None:
        """Run everything queued, and everything that causes, until the worker is idle.

        Args:
            advance_time: When only delayed messages are left, move the clock to the earliest
                one's due time and go on (retries' backoff, ``countdown``, ``eta``).
            timeout: Real seconds to wait for idleness before giving up.

        Raises:
            TimeoutError: the worker is still busy after ``timeout`` (a task that never
                returns, a task that keeps enqueueing more); says what is left.
        """
        if self._serving is None:
            raise RuntimeError("run_until_idle() needs the LocalWorker entered: async with it")
        try:
            with anyio.fail_after(timeout):
                while True:
                    await self._wait_quiet()
                    due = self._memory.next_due(self.queues) if advance_time else None
                    if due is None:
                        return
                    self.clock.advance_to(due)
                    for queue in self.queues:  # promotes what fell due, waking the consumer
                        await self._memory.counts(queue)
        except TimeoutError:
            raise TimeoutError(
                f"the local worker was still busy after {timeout} s: {await self._busy()}"
            ) from None

    async def _wait_quiet(self) -> None:
        quiet = 0
        while quiet < _QUIET_CHECKS:
            await anyio.sleep(0.001)
            quiet = quiet + 1 if not await self._busy() else 0

    async def _busy(self) -> str:
        """What is still going on, as text ('' when nothing)."""
        worker, parts = self.worker, []
        for queue in self.queues:
            counts = await self._memory.counts(queue)
            if counts.ready or counts.in_flight:
                parts.append(f"{queue}: {counts.ready} ready, {counts.in_flight} in flight")
        if worker.running or worker.held:
            parts.append(f"{worker.running} running, {worker.held} held by the worker")
        return "; ".join(parts)


class _EagerBroker:
    """The memory broker, whose publishes from outside the worker wait until it is idle."""

    def __init__(self, inner: Any, local: LocalWorker) -> None:
        self._inner = inner
        self._local = local

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def publish(
        self,
        queue: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        not_before: datetime | None = None,
    ) -> str:
        message_id: str = await self._inner.publish(queue, body, headers, not_before=not_before)
        if not _IN_WORKER.get():
            await self._local.run_until_idle()
        return message_id

    async def publish_many(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        ids: list[str] = await self._inner.publish_many(queue, messages)
        if not _IN_WORKER.get():
            await self._local.run_until_idle()
        return ids

    async def publish_unique(
        self, queue: str, message: OutgoingMessage, **claim: Any
    ) -> UniqueClaim:
        result: UniqueClaim = await self._inner.publish_unique(queue, message, **claim)
        if result.published and not _IN_WORKER.get():
            await self._local.run_until_idle()
        return result


class BlockingLocalWorker:
    """:class:`LocalWorker` for synchronous tests, on the blocking API's portal loop.

    Takes the same arguments; use it as ``with BlockingLocalWorker(app) as local:``.
    """

    def __init__(self, app: Chicory, **options: Any) -> None:
        self.local = LocalWorker(app, **options)
        self._context: AbstractContextManager[LocalWorker] | None = None

    @property
    def clock(self) -> VirtualClock:
        """The virtual clock of the broker and backend."""
        return self.local.clock

    @property
    def worker(self) -> Worker:
        """The in-process worker."""
        return self.local.worker

    def __enter__(self) -> Self:
        from chicory.blocking import _PORTAL

        self._context = _PORTAL.get().wrap_async_context_manager(self.local)
        self._context.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        context, self._context = self._context, None
        if context is not None:
            context.__exit__(exc_type, exc, tb)

    def run_until_idle(self, *, advance_time: bool = True, timeout: float = 30.0) -> None:
        """Block until the worker is idle; see :meth:`LocalWorker.run_until_idle`."""
        from chicory.blocking import call

        run: Callable[..., Any] = self.local.run_until_idle
        call(self.local.app, run, advance_time=advance_time, timeout=timeout)
