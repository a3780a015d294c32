"""The Prometheus middleware: measures every run, counts what the worker does, serves it all.

What is measured where:

* Around each run (``execute``): the outcome counter, the duration and queue-wait
  histograms and the in-progress gauge. The metric children of each (task, queue) pair are
  looked up once and kept, so a run costs a few counter updates.
* From the worker's observer events (rare ones only, off the task path): dead letters,
  redeliveries and lost leases.
* At scrape time: queue depth (:class:`~chicory_prometheus.depth.QueueDepthCollector`).

**Several worker processes on one machine** (``PROMETHEUS_MULTIPROC_DIR`` set, as
prometheus_client's multi-process mode requires): every process writes its samples into
that directory; the first worker to bind the port serves the sum of all of them, and the
others, finding the port taken, leave it to that one. A worker that stops marks its samples
dead (``mark_process_dead``), so its in-progress gauge leaves the sum. Without that variable,
a taken port is a configuration error (two workers would each serve only their own numbers).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Final

import anyio.lowlevel
from prometheus_client import REGISTRY, CollectorRegistry, multiprocess, start_http_server

from chicory.clock import utcnow
from chicory.context import TaskContext
from chicory.errors import ConfigurationError
from chicory.middleware import CallNext, Middleware
from chicory.plugins import TaskEvent, hookimpl
from chicory_prometheus.depth import QueueDepthCollector
from chicory_prometheus.metrics import Metrics

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from chicory.worker import Worker

__all__ = ["DEFAULT_PORT", "PORT_ENV", "PrometheusMiddleware"]

log = logging.getLogger("chicory_prometheus")

DEFAULT_PORT: Final = 9191
PORT_ENV: Final = "CHICORY_PROMETHEUS_PORT"
ADDR_ENV: Final = "CHICORY_PROMETHEUS_ADDR"
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


class PrometheusMiddleware(Middleware):
    """Prometheus metrics of a worker's tasks and queues, served over HTTP by the worker.

    Args:
        port: Port the worker serves ``/metrics`` on; ``None`` serves nothing (expose
            ``registry`` yourself).
        addr: Address to listen on.
        registry: Where the metrics live (default: prometheus_client's global registry).
        depth_timeout: Seconds one queue's counts may take at scrape time.
    """

    def __init__(
        self,
        *,
        port: int | None = DEFAULT_PORT,
        addr: str = "0.0.0.0",
        registry: CollectorRegistry | None = None,
        depth_timeout: float = 5.0,
    ) -> None:
        self.port = port
        self.addr = addr
        self.registry = REGISTRY if registry is None else registry
        self.metrics = Metrics.on(self.registry)
        self._depth_timeout = depth_timeout
        self._children: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._known: frozenset[str] = frozenset()
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._depth: QueueDepthCollector | None = None
        self._depth_registry: CollectorRegistry | None = None

    @classmethod
    def from_env(cls) -> PrometheusMiddleware:
        """Configured from ``CHICORY_PROMETHEUS_PORT`` (default 9191; empty: serve nothing)
        and ``CHICORY_PROMETHEUS_ADDR`` (default ``0.0.0.0``).

        Raises:
            ConfigurationError: the port is not a number.
        """
        text = os.environ.get(PORT_ENV, str(DEFAULT_PORT)).strip()
        try:
            port = int(text) if text else None
        except ValueError:
            raise ConfigurationError(f"{PORT_ENV}={text!r} is not a port number") from None
        return cls(port=port, addr=os.environ.get(ADDR_ENV, "0.0.0.0"))

    def _of(self, task: str, queue: str) -> tuple[Any, ...]:
        children = self._children.get((task, queue))
        if children is None:
            m = self.metrics
            children = self._children[(task, queue)] = (
                m.tasks.labels(task, queue, "succeeded"),
                m.tasks.labels(task, queue, "retried"),
                m.tasks.labels(task, queue, "failed"),
                m.duration.labels(task, queue),
                m.queue_wait.labels(task, queue),
                m.in_progress.labels(task, queue),
            )
        return children

    async def execute(self, ctx: TaskContext, call_next: CallNext) -> Any:
        """Count and time the run."""
        succeeded, retried, failed, duration, wait, in_progress = self._of(ctx.task_name, ctx.queue)
        if ctx.attempt == 1:
            due = ctx.eta or ctx.created_at
            wait.observe(max(0.0, (utcnow() - due).total_seconds()))
        in_progress.inc()
        started = time.perf_counter()
        try:
            value = await call_next(ctx)
        except Exception as exc:
            (retried if ctx.will_retry(exc) else failed).inc()
            raise
        else:
            succeeded.inc()
            return value
        finally:
            duration.observe(time.perf_counter() - started)
            in_progress.dec()

    @hookimpl
    def chicory_task_dead_lettered(self, event: TaskEvent) -> None:
        """Count a dead letter."""
        self.metrics.dead_letters.labels(self._task(event.task_name), event.queue).inc()

    @hookimpl
    def chicory_task_redelivered(self, event: TaskEvent) -> None:
        """Count a redelivery."""
        self.metrics.redeliveries.labels(self._task(event.task_name), event.queue).inc()

    @hookimpl
    def chicory_task_lease_lost(self, event: TaskEvent) -> None:
        """Count a lost lease."""
        self.metrics.lease_losses.labels(event.queue).inc()

    def _task(self, name: str) -> str:
        # A poison message may name anything: only registered names become label values.
        return name if name in self._known else ""

    async def on_worker_start(self, worker: Worker) -> None:
        """Start reporting queue depth, and serve the metrics.

        Raises:
            ConfigurationError: the port is taken and no multi-process directory is set.
        """
        self._known = frozenset(worker.app.tasks)
        depth = QueueDepthCollector(
            worker.app.broker,
            worker.queues,
            anyio.lowlevel.current_token(),
            timeout=self._depth_timeout,
        )
        if os.environ.get(MULTIPROC_ENV):
            served = CollectorRegistry()
            multiprocess.MultiProcessCollector(served)  # type: ignore[no-untyped-call]
        else:
            served = self.registry
        served.register(depth)
        self._depth, self._depth_registry = depth, served
        if self.port is None:
            return
        try:
            self._server, self._thread = start_http_server(self.port, self.addr, served)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            if os.environ.get(MULTIPROC_ENV):
                log.info(
                    "port %d is taken: another worker serves this machine's metrics", self.port
                )
                return
            raise ConfigurationError(
                f"the Prometheus port {self.port} is taken; choose another "
                f"({PORT_ENV}, or PrometheusMiddleware(port=...)), or set "
                f"{MULTIPROC_ENV} so that the workers of one machine share one endpoint"
            ) from exc
        log.info("Prometheus metrics on http://%s:%d/metrics", self.addr, self.port)

    async def on_worker_stop(self, worker: Worker) -> None:
        """Stop serving; in multi-process mode, mark this process's samples dead."""
        if self._server is not None:
            server, self._server = self._server, None
            await anyio.to_thread.run_sync(server.shutdown)
            server.server_close()
        if self._depth is not None and self._depth_registry is not None:
            self._depth_registry.unregister(self._depth)
            self._depth = self._depth_registry = None
        if os.environ.get(MULTIPROC_ENV):
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
