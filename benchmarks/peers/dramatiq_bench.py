"""Dramatiq with its Redis broker, driven like Chicory's drain.

The worker is ``dramatiq peers.dramatiq_app --processes 1 --threads 8`` (one worker process,
Dramatiq's default thread count; its supervisor process runs beside it); Dramatiq acks after
the actor ran. Dramatiq's enqueue is synchronous, one Lua call per message, with no batch
form: each batch is a loop of ``broker.enqueue`` in a thread.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from common import VENV_BIN, Measurement, Settings, child_process, drain_meters, redis_pid
from dramatiq import Message
from dramatiq.brokers.redis import RedisBroker
from driver import measure_drain, redis_done_waiter

__all__ = ["dramatiq_rep"]

WARMUP_TASKS = 500
THREADS = 8


async def dramatiq_rep(settings: Settings, log: Path) -> Measurement:
    """One drain repetition with a fresh Dramatiq worker."""
    queue = f"dramatiq_bench_{uuid.uuid4().hex[:8]}"
    env = {
        "BENCH_PEER_URL": settings.redis_url,
        "BENCH_PEER_QUEUE": queue,
        "BENCH_DONE_URL": settings.redis_url,
    }
    argv = [
        str(VENV_BIN / "dramatiq"),
        "peers.dramatiq_app",
        "--processes",
        "1",
        "--threads",
        str(THREADS),
    ]
    broker = RedisBroker(url=settings.redis_url, namespace="dramatiq-bench")  # type: ignore[no-untyped-call]
    broker.declare_queue(queue)

    def send(run: str, total: int, count: int) -> None:
        for _ in range(count):
            broker.enqueue(
                Message(
                    queue_name=queue,
                    actor_name="bench_noop",
                    args=(run, total),
                    kwargs={},
                    options={},
                )
            )

    async def enqueue(run: str, total: int, count: int) -> None:
        await asyncio.to_thread(send, run, total, count)

    try:
        with child_process(argv, env=env, log=log) as proc:
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
                raise RuntimeError(f"the Dramatiq worker exited early; see {log}")
    finally:
        broker.close()
    return result
