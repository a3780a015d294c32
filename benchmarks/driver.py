"""Producer-side measurements shared by Chicory and the peers.

* :func:`measure_drain`: enqueue ``tasks`` no-op tasks, then wait for the worker's one
  "run finished" record (see :mod:`completions`); gives the enqueue rate and the end-to-end
  rate (first enqueue -> last execution).
* :func:`measure_roundtrip` and :func:`measure_open_loop`: tasks whose results are awaited,
  with per-task latency from just before the enqueue to the result's arrival.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping

import redis.asyncio as aioredis
from common import Measurement, percentile
from completions import DONE_KEY_PREFIX

__all__ = [
    "Enqueue",
    "Roundtrip",
    "measure_drain",
    "measure_open_loop",
    "measure_roundtrip",
    "redis_done_waiter",
]

Enqueue = Callable[[str, int, int], Awaitable[None]]
"""``enqueue(run, total, count)``: enqueue ``count`` no-op tasks of ``run``."""

DoneWaiter = Callable[[str, float], Awaitable[float]]
"""``wait(run, timeout)``: the wall-clock time the run's last task finished."""

Roundtrip = Callable[[int], Awaitable[object]]
"""``call(x)``: enqueue ``add(x, 1)`` and await its result."""


def redis_done_waiter(url: str, alive: Callable[[], bool] | None = None) -> DoneWaiter:
    """A waiter polling the ``DONE_KEY_PREFIX + run`` key in Redis every 20 ms.

    The key holds the time the worker finished the run, so how soon the poll sees it does
    not change the measurement; polling slowly keeps the harness from taking CPU and Redis
    time from the worker it measures.

    Args:
        url: The Redis database the worker writes the key to.
        alive: Whether the worker process still runs; the wait fails at once when not.
    """

    async def wait(run: str, timeout: float) -> float:
        client = aioredis.Redis.from_url(url)
        try:
            deadline = time.monotonic() + timeout
            while (raw := await client.get(DONE_KEY_PREFIX + run)) is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"run {run} did not finish within {timeout} s")
                if alive is not None and not alive():
                    raise RuntimeError(f"the worker exited before run {run} finished")
                await asyncio.sleep(0.02)
            return float(raw)
        finally:
            await client.aclose()

    return wait


async def measure_drain(
    enqueue: Enqueue,
    wait_done: DoneWaiter,
    tasks: int,
    batch: int,
    timeout: float = 300.0,
    cpu: Mapping[str, Callable[[], float]] | None = None,
) -> Measurement:
    """Enqueue ``tasks`` no-op tasks in batches, wait for the last to run; rates in tasks/s.

    Args:
        enqueue: Enqueues a batch.
        wait_done: Waits for the run's last completion.
        tasks: No-op tasks to run.
        batch: Tasks per ``enqueue`` call.
        timeout: Longest wait for the last completion.
        cpu: CPU meters by name (each returns CPU seconds used so far, e.g. by the worker
            process); each adds ``<name>`` = CPU microseconds per task over the run.
    """
    run = uuid.uuid4().hex
    meters = dict(cpu or {})
    cpu_before = {name: meter() for name, meter in meters.items()}
    start = time.time()
    for offset in range(0, tasks, batch):
        await enqueue(run, tasks, min(batch, tasks - offset))
    enqueued = time.time()
    finished = await wait_done(run, timeout)
    values = {"enqueue": tasks / (enqueued - start), "e2e": tasks / max(finished - start, 1e-9)}
    for name, meter in meters.items():
        values[name] = (meter() - cpu_before[name]) / tasks * 1e6
    return Measurement(values)


async def measure_roundtrip(
    call_many: Callable[[int], Awaitable[list[float]]], tasks: int
) -> Measurement:
    """Run ``tasks`` round trips at once; tasks/s and p50/p99 latency (ms).

    Args:
        call_many: Enqueues ``n`` tasks at once and returns, per task, the seconds from the
            start of the call to its result's arrival.
        tasks: How many.
    """
    start = time.perf_counter()
    latencies = await call_many(tasks)
    elapsed = time.perf_counter() - start
    return Measurement(
        {
            "rate": tasks / elapsed,
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
        }
    )


async def measure_open_loop(call: Roundtrip, rate: float, seconds: float) -> Measurement:
    """Open-loop producer: one task every ``1/rate`` s for ``seconds``; p50/p99 latency (ms).

    A task is sent on schedule whether or not earlier ones have finished; each latency runs
    from just before its enqueue to its result's arrival.
    """
    latencies: list[float] = []
    total = int(rate * seconds)

    async def one(x: int) -> None:
        sent = time.perf_counter()
        await call(x)
        latencies.append(time.perf_counter() - sent)

    loop_start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for i in range(total):
            delay = loop_start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            group.create_task(one(i))
    achieved = total / (time.perf_counter() - loop_start)
    return Measurement(
        {
            "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": max(latencies) * 1000,
            "rate": achieved,
        }
    )
