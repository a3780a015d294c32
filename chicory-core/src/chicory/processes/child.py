"""One worker process under the supervisor: spawn-safe, recycled, never orphaned.

:func:`child_main` is what each ``spawn``\\ ed child runs. It receives a :class:`ChildConfig`
(plain values, picklable), imports the app by its ``module:attribute`` spec, and serves a
:class:`~chicory.worker.Worker` until one of:

- **SIGTERM** (the supervisor forwards its own SIGTERM or SIGINT): drain; a second one stops
  at once, handing running work back. Children ignore SIGINT, so a Ctrl-C in a terminal
  reaches them once, through the supervisor;
- **recycling**: after ``max_tasks`` deliveries, or when its resident memory passes
  ``max_memory`` bytes (checked every :data:`MEMORY_CHECK_SECONDS`), the child drains like on
  SIGTERM and exits with :data:`RECYCLED`, and the supervisor starts a fresh one at once.
  Draining follows the delivery modes' rules: nothing running is cut off before the drain
  timeout, prefetched work is handed back unstarted;
- **the supervisor is gone** (its pid is no longer the parent's): drain and exit.

It tells the supervisor ``("ready", worker_id)`` once it consumes: a child that exits before
that crashed at start.
"""

from __future__ import annotations

import logging
import os
import signal
from multiprocessing.connection import Connection
from typing import Any, Final

import anyio
import attrs

from chicory.processes.memory import rss_bytes
from chicory.redact import RedactingFormatter

__all__ = ["MEMORY_CHECK_SECONDS", "RECYCLED", "ChildConfig", "child_main"]

log = logging.getLogger("chicory.processes")

RECYCLED: Final = 3
"""Exit code of a child that drained to be recycled (the supervisor replaces it at once)."""

MEMORY_CHECK_SECONDS: Final = 1.0
"""How often a child compares its resident memory with ``max_memory``."""


@attrs.frozen(kw_only=True)
class ChildConfig:
    """What a child needs to start its worker (plain values: it crosses ``spawn``).

    Attributes:
        app: The app as ``module:attribute``.
        worker_options: Keyword arguments of :class:`~chicory.worker.Worker`.
        max_tasks: Recycle after this many deliveries (``None``: never).
        max_memory: Recycle once resident memory passes this many bytes (``None``: never).
        gc_tuning: Tune the garbage collector like ``chicory worker`` does.
        log_level: The logging level name.
        log_format: ``text`` or ``json`` (see :mod:`chicory.logconfig`).
        middleware: Names of middleware installed plugins offer, added after the app's own.
        cwd: The directory the app is imported from.
    """

    app: str
    worker_options: dict[str, Any] = attrs.field(factory=dict)
    max_tasks: int | None = None
    max_memory: int | None = None
    gc_tuning: bool = True
    log_level: str = "INFO"
    log_format: str = "text"
    middleware: list[str] = attrs.field(factory=list)
    cwd: str = "."


def child_main(config: ChildConfig, conn: Connection, index: int) -> None:
    """Entry point of a child process (see the module docstring)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if config.log_format == "json":
        from chicory.logconfig import configure_logging

        configure_logging(config.log_level, "json")  # redacted, as every chicory log line
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(  # as the parent's: no password of a URL reaches the log
            RedactingFormatter(f"%(asctime)s %(levelname)-7s %(name)s [child {index}]: %(message)s")
        )
        logging.basicConfig(level=config.log_level, handlers=[handler])
    os.chdir(config.cwd)
    from chicory.cli.inputs import load_app
    from chicory.worker import Worker, tune_gc

    app = load_app(config.app)
    for name in config.middleware:
        app.add_middleware(name)
    worker = Worker(app, max_tasks=config.max_tasks, **config.worker_options)
    if config.gc_tuning:
        tune_gc()
    recycled = anyio.run(_serve, worker, conn, config, os.getppid())
    conn.close()
    if recycled:
        raise SystemExit(RECYCLED)


async def _serve(worker: Any, conn: Connection, config: ChildConfig, parent: int) -> bool:
    """Serve until stopped; return whether the worker stopped to be recycled."""
    reasons: list[str] = []
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_signals, worker)
            tg.start_soon(_watch_parent, worker, parent)
            if config.max_memory is not None:
                tg.start_soon(_watch_memory, worker, config.max_memory, reasons)
            tg.start_soon(_report_ready, worker, conn)
            await worker.serve()
            tg.cancel_scope.cancel()
    finally:
        await worker.app.close()
    if worker.max_tasks is not None and worker.processed >= worker.max_tasks:
        reasons.append(f"handled {worker.processed} deliveries (max {worker.max_tasks})")
    if reasons:
        log.info("worker %s recycled: %s", worker.worker_id, "; ".join(reasons))
        return True
    return False


async def _report_ready(worker: Any, conn: Connection) -> None:
    await worker.wait_started()
    conn.send(("ready", worker.worker_id))


async def _signals(worker: Any) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        received = 0
        async for _ in signals:
            received += 1
            if received == 1:
                log.warning("SIGTERM received: draining; send it again to stop at once")
                worker.stop()
            else:
                log.warning("SIGTERM received again: handing back running tasks now")
                worker.stop(now=True)


async def _watch_parent(worker: Any, parent: int) -> None:
    while os.getppid() == parent:  # noqa: ASYNC110 - no event says a parent died
        await anyio.sleep(1.0)
    log.warning("the supervisor (pid %d) is gone: draining and exiting", parent)
    worker.stop()


async def _watch_memory(worker: Any, limit: int, reasons: list[str]) -> None:
    while not worker.stopping:
        await anyio.sleep(MEMORY_CHECK_SECONDS)
        rss = rss_bytes()
        if rss > limit:
            reasons.append(f"resident memory {rss / 2**20:.0f} MiB over {limit / 2**20:.0f} MiB")
            log.info("worker %s: %s; draining to be recycled", worker.worker_id, reasons[-1])
            worker.stop()
            return
