"""Chicory's numbers: drain (both delivery modes), round trip and open-loop latency.

On Redis the worker is a separate process (``chicory worker chicory_app:app``), started
fresh for each repetition and stopped by pid; its RSS is sampled with psutil throughout. On
``memory://`` producer and worker share one process and one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from chicory_app import build_app
from common import (
    VENV_BIN,
    Measurement,
    RssSampler,
    Settings,
    child_process,
    drain_meters,
    redis_pid,
)
from driver import (
    measure_drain,
    measure_open_loop,
    measure_roundtrip,
    redis_done_waiter,
)

from chicory import Chicory, Worker
from chicory.worker import tune_gc

__all__ = [
    "MODES",
    "SWEEP",
    "enqueuer",
    "memory_default_gc_rep",
    "memory_rep",
    "redis_drain_rep",
    "redis_rep",
    "round_trips",
]

MODES = {"at_least_once": "bench.noop_alo", "at_most_once": "bench.noop_amo"}
WARMUP_TASKS = 500
ROUNDTRIP_WARMUP = 200
SWEEP = ((64, 64), (16, 48), (256, 768))
"""Other worker settings ``(concurrency, prefetch)`` whose at-least-once drain is measured too:
the library's default prefetch (= concurrency), and fewer and more concurrent tasks."""


def enqueuer(app: Chicory, task_name: str) -> Callable[[str, int, int], Awaitable[None]]:
    """``enqueue(run, total, count)`` for no-op task ``task_name``, with ``delay_many``."""
    task = app.tasks[task_name]

    async def enqueue(run: str, total: int, count: int) -> None:
        await task.delay_many([(run, total)] * count)

    return enqueue


def round_trips(
    app: Chicory,
) -> tuple[Callable[[int], Awaitable[object]], Callable[[int], Awaitable[list[float]]]]:
    """``(call, call_many)``: one awaited ``add``, and ``n`` at once with their latencies."""
    add = app.tasks["bench.add"]

    async def call(x: int) -> object:
        return await (await add.delay(x, 1)).get(timeout=60)

    async def call_many(n: int) -> list[float]:
        start = time.perf_counter()
        results = await add.delay_many([(i, 1) for i in range(n)])

        async def arrival(result: Any) -> float:
            await result.get(timeout=120)
            return time.perf_counter() - start

        return list(await asyncio.gather(*(arrival(r) for r in results)))

    return call, call_many


async def _suite(
    app: Chicory,
    settings: Settings,
    wait_done: Callable[[str, float], Awaitable[float]],
    out: dict[str, Measurement],
    cpu: Mapping[str, Callable[[], float]],
    *,
    drain_only: bool = False,
) -> None:
    """Warm up, then drain per mode, round trip and open-loop latency, into ``out``.

    With ``drain_only``, the at-least-once drain alone.
    """
    await measure_drain(
        enqueuer(app, MODES["at_least_once"]), wait_done, WARMUP_TASKS, 100, timeout=60
    )
    modes = {"at_least_once": MODES["at_least_once"]} if drain_only else MODES
    for mode, task_name in modes.items():
        out[f"drain_{mode}"] = await measure_drain(
            enqueuer(app, task_name), wait_done, settings.drain_tasks, settings.batch, cpu=cpu
        )
    if drain_only:
        return
    call, call_many = round_trips(app)
    await call_many(ROUNDTRIP_WARMUP)  # like the drain's warm-up: the result path's first use
    out["roundtrip"] = await measure_roundtrip(call_many, settings.roundtrip_tasks)
    out["latency"] = await measure_open_loop(call, settings.latency_rate, settings.latency_seconds)


def _worker_argv(concurrency: int, prefetch: int) -> list[str]:
    return [
        str(VENV_BIN / "chicory"),
        "--log-level",
        "WARNING",
        "worker",
        "chicory_app:app",
        "--concurrency",
        str(concurrency),
        "--prefetch",
        str(prefetch),
    ]


async def redis_drain_rep(
    settings: Settings, concurrency: int, prefetch: int, log: Path
) -> Measurement:
    """An at-least-once drain only, with a fresh worker process of these settings."""
    url = settings.chicory_url(f"cd{uuid.uuid4().hex[:8]}")
    env = {"BENCH_CHICORY_URL": url, "BENCH_DONE_URL": settings.redis_url}
    app = build_app(url, lambda run, at: None)
    enqueue = enqueuer(app, MODES["at_least_once"])
    try:
        with child_process(_worker_argv(concurrency, prefetch), env=env, log=log) as proc:
            wait_done = redis_done_waiter(settings.redis_url, alive=lambda: proc.poll() is None)
            await measure_drain(enqueue, wait_done, WARMUP_TASKS, 100, timeout=60)
            meters = drain_meters(proc.pid, redis_pid(settings.redis_url))
            return await measure_drain(
                enqueue, wait_done, settings.drain_tasks, settings.batch, cpu=meters
            )
    finally:
        await app.close()


async def redis_rep(settings: Settings, log: Path) -> dict[str, Measurement]:
    """One repetition on Redis with a fresh worker process; also its RSS (MiB)."""
    prefix = f"cb{uuid.uuid4().hex[:8]}"
    url = settings.chicory_url(prefix)
    env = {"BENCH_CHICORY_URL": url, "BENCH_DONE_URL": settings.redis_url}
    argv = _worker_argv(settings.concurrency, settings.worker_prefetch)
    out: dict[str, Measurement] = {}
    app = build_app(url, lambda run, at: None)
    try:
        with child_process(argv, env=env, log=log) as proc, RssSampler(proc.pid) as rss:
            await _suite(
                app,
                settings,
                redis_done_waiter(settings.redis_url, alive=lambda: proc.poll() is None),
                out,
                drain_meters(proc.pid, redis_pid(settings.redis_url)),
            )
            out["worker_rss"] = Measurement(
                {"peak_mib": rss.peak / 2**20, "end_mib": rss.current() / 2**20}
            )
            if proc.poll() is not None:
                raise RuntimeError(f"the Chicory worker exited early; see {log}")
    finally:
        await app.close()
    return out


@asynccontextmanager
async def _in_process_worker(app: Chicory, settings: Settings) -> AsyncIterator[Worker]:
    worker = Worker(
        app,
        concurrency=settings.concurrency,
        prefetch=settings.worker_prefetch,
        heartbeat_interval=0,
    )
    async with asyncio.TaskGroup() as group:
        group.create_task(worker.serve())
        await worker.wait_started()
        try:
            yield worker
        finally:
            worker.stop()


async def memory_rep(settings: Settings) -> dict[str, Measurement]:
    """One repetition on ``memory://``: producer and worker in this process.

    The process exists to run them, so it tunes its collector the way ``docs/guide.md``
    advises for such a process (:func:`chicory.worker.tune_gc`, what ``chicory worker``
    does); :func:`memory_default_gc_rep` measures the drain with the collector untouched.
    """
    return await _memory_rep(settings, tune=True)


async def memory_default_gc_rep(settings: Settings) -> Measurement:
    """The ``memory://`` at-least-once drain in a process whose collector keeps its defaults."""
    return (await _memory_rep(settings, tune=False))["drain_at_least_once"]


async def _memory_rep(settings: Settings, *, tune: bool) -> dict[str, Measurement]:
    finished: dict[str, float] = {}
    events: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)

    def notify(run: str, at: float) -> None:
        finished[run] = at
        events[run].set()

    async def wait_done(run: str, timeout: float) -> float:
        async with asyncio.timeout(timeout):
            await events[run].wait()
        del events[run]
        return finished.pop(run)

    # The worker warns that memory:// is process-local: known, and noise here.
    logging.getLogger("chicory.worker").setLevel(logging.ERROR)
    app = build_app("memory://", notify)
    out: dict[str, Measurement] = {}
    cpu = {"cpu_us": time.process_time}
    try:
        if tune:
            tune_gc()
        async with _in_process_worker(app, settings):
            await _suite(app, settings, wait_done, out, cpu, drain_only=not tune)
        if tune:
            out["filled"] = await _memory_filled(app, settings, wait_done)
    finally:
        await app.close()
    return out


async def _memory_filled(
    app: Chicory, settings: Settings, wait_done: Callable[[str, float], Awaitable[float]]
) -> Measurement:
    """The worker alone: at-least-once no-ops enqueued first, then a worker started on them.

    Tasks/s from the worker's start to the last task's end, and the process's CPU per task
    over that span (the producer's work is done before it starts; the code is warm from
    the suite).
    """
    run = uuid.uuid4().hex
    task = app.tasks[MODES["at_least_once"]]
    for offset in range(0, settings.drain_tasks, settings.batch):
        count = min(settings.batch, settings.drain_tasks - offset)
        await task.delay_many([(run, settings.drain_tasks)] * count)
    cpu_before, start = time.process_time(), time.time()
    async with _in_process_worker(app, settings):
        finished = await wait_done(run, 300)
    cpu_us = (time.process_time() - cpu_before) / settings.drain_tasks * 1e6
    return Measurement({"rate": settings.drain_tasks / (finished - start), "cpu_us": cpu_us})
