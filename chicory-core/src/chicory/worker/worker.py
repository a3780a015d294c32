"""The worker: fetches deliveries, runs tasks, settles them through the ack strategies.

Shape (one anyio task group, no fire-and-forget tasks)::

    serve()
     ├─ observer dispatcher            (lifecycle hooks, off the task path)
     ├─ heartbeat loop                 (WorkerInfo records in the result backend:
     │                                  chicory.worker.upkeep)
     ├─ lease loop                     (renews leases of held deliveries: the same)
     ├─ revocation feed                (cancel requests: chicory.worker.revocations)
     ├─ flow gate loop                 (renews/releases concurrency permits, if any task
     │                                  has a concurrency limit: chicory.worker.gate)
     └─ runners group
         ├─ fetch loop                 (fetches up to half the capacity in one call)
         └─ N runners                  (a fixed set, N = concurrency, fed by the inbox)

Capacity is ``concurrency + prefetch``: the fetch loop never holds more unsettled deliveries
than that. What happens to each delivery is :mod:`chicory.worker.job`.

Keeping the broker busy while tasks run, within that bound: one fetch asks for at most half
the capacity, so while one batch runs the next can be on its way. When a fetch comes back
full (a backlog), the next one goes out at once, before the batch runs; when it comes back
short (the queue is drained: a lone task, say), the batch runs and settles first, since the
next fetch would only wait. And a runner yields to the event loop every
:data:`RUNNER_STREAK` deliveries it takes without waiting, so a batch of instant tasks does
not hold back the replies (an ack, the next batch) that free room and keep fetches going.

Before consuming, the worker logs its settings (URLs redacted) and awaits each middleware's
``on_worker_start``; after draining, their ``on_worker_stop`` in reverse order (see
:mod:`chicory.middleware`). What they put in :attr:`Worker.resources` tasks see as
``ctx.resources``.

``stop()`` drains: fetching stops, deliveries not yet started are handed back, running ones
get ``drain_timeout`` seconds, after which they are cancelled and handed back at once by
their ack strategy. ``kill()`` simulates SIGKILL for tests: everything stops, nothing is
settled or handed back.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import uuid
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio

from chicory.broker import Broker, Consumer, Delivery
from chicory.clock import utcnow
from chicory.errors import ConfigurationError
from chicory.plugins.events import WorkerEvent
from chicory.worker.inbox import Inbox
from chicory.worker.job import JobRunner
from chicory.worker.observers import ObserverBus
from chicory.worker.revocations import RevocationFeed
from chicory.worker.settler import Settler
from chicory.worker.slots import RunnerSlot
from chicory.worker.startup import log_settings, middleware_lifecycle, settings_of, warn_about_lease
from chicory.worker.upkeep import WorkerUpkeep

if TYPE_CHECKING:
    from chicory.app import Chicory

__all__ = ["Worker"]

log = logging.getLogger("chicory.worker")

RUNNER_STREAK = 32
"""Deliveries a runner takes back to back before it lets the event loop run."""


class Worker(WorkerUpkeep):
    """Consumes queues of one app and runs their tasks.

    Args:
        app: The app whose tasks, broker and result backend to use.
        queues: Queues to consume (default: the app's default queue).
        concurrency: Tasks run at once.
        prefetch: Deliveries held beyond the running ones (default: ``concurrency``).
        drain_timeout: Seconds running tasks get to finish after ``stop()``.
        lease_renew_interval: Seconds between lease renewals of running at-least-once
            tasks (default: a third of the lease time the broker declares, else 10 s).
        heartbeat_interval: Seconds between heartbeat records.
        sync_threads: Threads for sync task functions (default: ``concurrency``).
        settle_timeout: Seconds an ack, hand-back or result write may take before it is
            abandoned (it is shielded from cancellation until then).
        fetch_timeout: Longest single wait for new deliveries.
        worker_id: Unique id (default: ``host-pid-random``).
        max_tasks: Drain and stop after handling this many deliveries (how
            ``chicory worker --max-tasks-per-child`` recycles a worker process).
    """

    def __init__(
        self,
        app: Chicory,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 10,
        prefetch: int | None = None,
        drain_timeout: float = 30.0,
        lease_renew_interval: float | None = None,
        heartbeat_interval: float = 2.0,
        sync_threads: int | None = None,
        settle_timeout: float = 10.0,
        fetch_timeout: float = 1.0,
        worker_id: str | None = None,
        max_tasks: int | None = None,
    ) -> None:
        if concurrency < 1:
            raise ConfigurationError(f"concurrency must be at least 1, got {concurrency}")
        if max_tasks is not None and max_tasks < 1:
            raise ConfigurationError(f"max_tasks must be at least 1, got {max_tasks}")
        if prefetch is not None and prefetch < 0:
            raise ConfigurationError(f"prefetch cannot be negative, got {prefetch}")
        for name, value in (
            ("drain_timeout", drain_timeout),
            ("lease_renew_interval", lease_renew_interval or 0.0),
            ("heartbeat_interval", heartbeat_interval),
            ("settle_timeout", settle_timeout),
            ("fetch_timeout", fetch_timeout),
        ):
            if value < 0 or math.isnan(value):
                raise ConfigurationError(f"{name} must be a non-negative number, got {value}")
        self.app = app
        self.queues = tuple(queues or (app.default_queue,))
        self.concurrency = concurrency
        self.prefetch = concurrency if prefetch is None else prefetch
        self.drain_timeout = drain_timeout
        self.lease_renew_interval = lease_renew_interval
        self.heartbeat_interval = heartbeat_interval
        self.sync_threads = sync_threads or concurrency
        self.fetch_timeout = fetch_timeout
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._capacity = concurrency + self.prefetch
        self.resources: dict[str, Any] = {}
        """Shared resources for tasks, by name: middleware fill it in ``on_worker_start``;
        tasks read it as ``ctx.resources``."""
        self.resources_view: Mapping[str, Any] = MappingProxyType(self.resources)
        """:attr:`resources`, read-only (what every ``TaskContext`` holds)."""
        self._bus = ObserverBus(app.plugins)
        self._settle_timeout = settle_timeout
        self._jobs = JobRunner(self, settle_timeout=settle_timeout)
        self.max_tasks = max_tasks
        self._last_task = max_tasks or -1  # processed never equals -1: no check per task
        self._settler: Settler | None = None
        self._inbox = Inbox()
        self._held = 0
        self._stopping = False
        self._killed = False
        self._started = anyio.Event()
        self._slot_freed = anyio.Event()
        self._fetch_scope: anyio.CancelScope | None = None
        self._runners_scope: anyio.CancelScope | None = None
        self._outer_scope: anyio.CancelScope | None = None
        self._started_at = utcnow()

    def __repr__(self) -> str:
        queues = ",".join(self.queues)
        return f"<Worker {self.worker_id} queues={queues} broker={self.app.broker_description}>"

    @property
    def stopping(self) -> bool:
        """Whether ``stop()`` or ``kill()`` was called."""
        return self._stopping

    @property
    def killed(self) -> bool:
        """Whether ``kill()`` was called."""
        return self._killed

    @property
    def processed(self) -> int:
        """Deliveries this worker has finished handling."""
        return self._jobs.processed

    @property
    def running(self) -> int:
        """Task functions running right now."""
        return self._jobs.running

    @property
    def held(self) -> int:
        """Deliveries fetched and not yet settled (running, waiting for a runner, or being
        acked or having their results written)."""
        return self._held

    @property
    def bus(self) -> ObserverBus:
        """The observer event bus."""
        return self._bus

    async def wait_started(self) -> None:
        """Return once the worker is consuming."""
        await self._started.wait()

    def stop(self, *, now: bool = False) -> None:
        """Drain gracefully; with ``now``, cancel running tasks at once (handing them back)."""
        self._stopping = True
        if self._fetch_scope is not None:
            self._fetch_scope.cancel()
        self._slot_freed.set()
        if now and self._runners_scope is not None:
            self._runners_scope.deadline = anyio.current_time()

    def kill(self) -> None:
        """Stop immediately without settling or handing back anything (simulates SIGKILL)."""
        self._killed = True
        self._stopping = True
        if self._settler is not None:
            self._settler.kill()
        if self._outer_scope is not None:
            self._outer_scope.cancel()

    def run(self) -> None:
        """Serve until SIGINT/SIGTERM, then drain; a second signal stops at once."""
        anyio.run(self._serve_with_signals)

    async def serve(self) -> None:
        """Consume until ``stop()`` (then drain) or ``kill()``."""
        broker = await self.app.connected_broker()
        await self.app.connected_backend()
        log_settings(self)
        warn_about_lease(self)
        async with middleware_lifecycle(self):
            await self._serve_connected(broker)

    async def _serve_connected(self, broker: Broker) -> None:
        consumer = broker.consume(self.queues, prefetch=self._capacity)
        self._settler = settler = Settler(
            consumer,
            self.app.backend,
            result_ttl=self.app.result_ttl,
            settle_timeout=self._settle_timeout,
            on_settled=self._release,
            filling=self._inbox.handing_out,
            quiet=self._inbox.quiet,
            on_lost=self._jobs.lease_lost,
        )
        self._jobs.settler = settler
        self._jobs.followups.loop = asyncio.get_running_loop()
        self._jobs.fan_out = self._inbox.fan_out
        try:
            with anyio.CancelScope() as self._outer_scope:
                async with anyio.create_task_group() as outer:
                    outer.start_soon(self._bus.run)
                    outer.start_soon(settler.run)
                    async with anyio.create_task_group() as background:
                        background.start_soon(self._heartbeat_loop)
                        background.start_soon(self._lease_loop, consumer)
                        if any(t.flow and t.flow.concurrency for t in self.app.tasks.values()):
                            background.start_soon(self._jobs.gate.run)
                        # The app's backend as it is now, not at construction: the
                        # testkit's LocalWorker replaces it in between.
                        revocations = RevocationFeed(
                            self.app.backend, self._jobs.revoked, self._jobs.cancel_running
                        )
                        await background.start(revocations.run)
                        await self._consume(consumer)
                        background.cancel_scope.cancel()
                    settler.close()
                    self._bus.close()
        finally:
            if not self._killed:
                with anyio.CancelScope(shield=True), anyio.move_on_after(self.drain_timeout + 5):
                    await consumer.close()
                log.info("worker %s stopped after %d deliveries", self.worker_id, self.processed)
            self._jobs.threads.close()

    async def _consume(self, consumer: Consumer) -> None:
        inbox = self._inbox
        async with anyio.create_task_group() as runners:
            self._runners_scope = runners.cancel_scope
            for _ in range(self.concurrency):
                runners.start_soon(self._runner, inbox)
            self._bus.emit_now("chicory_worker_started", self._worker_event())
            log.info("worker %s consuming %s", self.worker_id, ", ".join(self.queues))
            self._started.set()
            try:
                await self._fetch_loop(consumer, inbox)
            finally:
                inbox.close()
            self._bus.emit_now("chicory_worker_stopping", self._worker_event())
            log.info("worker %s draining (up to %.1f s)", self.worker_id, self.drain_timeout)
            if runners.cancel_scope.deadline > anyio.current_time() + self.drain_timeout:
                runners.cancel_scope.deadline = anyio.current_time() + self.drain_timeout

    async def _fetch_loop(self, consumer: Consumer, inbox: Inbox) -> None:
        most = max(1, self._capacity // 2)  # per fetch: the next batch can be in flight
        while not self._stopping:
            free = min(self._capacity - self._held, most)
            if free <= 0:
                self._slot_freed = anyio.Event()
                if self._capacity - self._held <= 0 and not self._stopping:
                    await self._slot_freed.wait()
                continue
            batch: Sequence[Delivery] = ()
            with anyio.CancelScope() as self._fetch_scope:
                if self.stopping:  # stop() may have run while we waited for a slot
                    break
                try:
                    batch = await consumer.fetch(free, self.fetch_timeout)
                except Exception:
                    log.exception("fetching from the broker failed; retrying in 1 s")
                    await anyio.sleep(1.0)
            self._fetch_scope = None
            self._held += len(batch)
            inbox.put_many(batch)
            if 1 < len(batch) == free:
                continue  # a backlog: fetch the next batch while this one runs
            if batch:
                # Let the runners start this batch, and the settler send what they finish,
                # before the next fetch goes out: that order is what a lone task waits for.
                await anyio.lowlevel.checkpoint()
                await anyio.lowlevel.checkpoint()

    async def _runner(self, inbox: Inbox) -> None:
        jobs = self._jobs
        settler = self._settler
        assert settler is not None
        slot = RunnerSlot(asyncio.current_task())
        jobs.slots.append(slot)
        streak = 0
        while True:
            streak += 1
            if streak == RUNNER_STREAK:  # yield with no delivery in hand
                streak = 0
                await anyio.lowlevel.checkpoint()
            delivery = inbox.get_nowait()
            if delivery is None:
                delivery = await inbox.get()
                if delivery is None:
                    break
            handed_off = False
            try:
                handed_off = await jobs.handle(delivery, slot)
                if handed_off and inbox.quiet():
                    await settler.send_now()  # a lone task's settle goes out from here
            finally:
                jobs.processed += 1
                if not handed_off:
                    self._release()
                if jobs.processed == self._last_task:
                    log.info(
                        "worker %s handled its %d deliveries; draining",
                        self.worker_id,
                        self.max_tasks,
                    )
                    self.stop()

    def _release(self, count: int = 1) -> None:
        """``count`` held deliveries are settled: their slots are free for the fetch loop."""
        self._held -= count
        self._slot_freed.set()

    async def _serve_with_signals(self) -> None:
        try:
            # Connect first, so an unreachable broker is one clear error, not a task-group one.
            await self.app.connected_broker()
            await self.app.connected_backend()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_signals)
                await self.serve()
                tg.cancel_scope.cancel()
        finally:
            await self.app.close()

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            received = 0
            async for signum in signals:
                received += 1
                name = signal.Signals(signum).name
                if received == 1:
                    log.warning("%s received: draining; send it again to stop at once", name)
                    self.stop()
                else:
                    log.warning("%s received again: handing back running tasks now", name)
                    self.stop(now=True)

    def settings(self) -> dict[str, Any]:
        """The worker's effective settings, as logged at start-up (URLs redacted)."""
        return settings_of(self)

    def _worker_event(self) -> WorkerEvent:
        return WorkerEvent(
            worker_id=self.worker_id,
            queues=self.queues,
            concurrency=self.concurrency,
            broker=self.app.broker_description,
            at=utcnow(),
        )
