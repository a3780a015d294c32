"""taskiq with taskiq-redis's stream broker, driven like Chicory's drain.

The worker is ``taskiq worker peers.taskiq_app:broker --workers 1`` (one worker process;
taskiq's supervisor process runs beside it), ``--max-async-tasks`` = the Chicory worker's
concurrency, default ack type (after execution). taskiq has no batch enqueue: each batch is
``asyncio.gather`` of ``kiq()`` calls over a pool of 50 connections.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from common import VENV_BIN, Measurement, Settings, child_process, drain_meters, redis_pid
from driver import measure_drain, redis_done_waiter
from taskiq.kicker import AsyncKicker
from taskiq_redis import RedisStreamBroker

__all__ = ["taskiq_rep"]

WARMUP_TASKS = 500


async def taskiq_rep(settings: Settings, log: Path) -> Measurement:
    """One drain repetition with a fresh taskiq worker."""
    queue = f"taskiq-bench-{uuid.uuid4().hex[:8]}"
    env = {
        "BENCH_PEER_URL": settings.redis_url,
        "BENCH_PEER_QUEUE": queue,
        "BENCH_DONE_URL": settings.redis_url,
    }
    argv = [
        str(VENV_BIN / "taskiq"),
        "worker",
        "peers.taskiq_app:broker",
        "--workers",
        "1",
        "--max-async-tasks",
        str(settings.concurrency),
        "--log-level",
        "WARNING",
    ]
    broker = RedisStreamBroker(settings.redis_url, queue_name=queue, max_connection_pool_size=50)
    await broker.startup()
    kicker: AsyncKicker[..., None] = AsyncKicker("bench.noop", broker, {})

    async def enqueue(run: str, total: int, count: int) -> None:
        await asyncio.gather(*(kicker.kiq(run, total) for _ in range(count)))

    try:
        # taskiq's supervisor lingers after its worker stopped on SIGTERM: do not wait long.
        with child_process(argv, env=env, log=log, stop_timeout=3) as proc:
            wait_done = redis_done_waiter(settings.redis_url, alive=lambda: proc.poll() is None)
            await measure_drain(enqueue, wait_done, WARMUP_TASKS, 100, timeout=60)
            result = await measure_drain(
                enqueue,
                wait_done,
                settings.drain_tasks,
                settings.batch,
                cpu=drain_meters(proc.pid, redis_pid(settings.redis_url)),
            )
            if proc.poll() is not None:
                raise RuntimeError(f"the taskiq worker exited early; see {log}")
    finally:
        await broker.shutdown()
    return result
