"""The taskiq app of the peer benchmark: taskiq-redis's stream broker and one no-op task.

The worker process (``taskiq worker peers.taskiq_app:broker``) reads ``BENCH_PEER_URL`` (the
broker's Redis), ``BENCH_DONE_URL`` and ``BENCH_PEER_QUEUE`` from the environment.
"""

from __future__ import annotations

import os

from completions import Completions, env_notifier
from taskiq_redis import RedisStreamBroker

__all__ = ["broker", "noop"]

_URL = os.environ.get("BENCH_PEER_URL", "redis://127.0.0.1:6379/13")

broker = RedisStreamBroker(
    _URL, queue_name=os.environ.get("BENCH_PEER_QUEUE", "taskiq-bench"), consumer_id="0"
)
_completions = Completions(env_notifier())


@broker.task(task_name="bench.noop")
async def noop(run: str, total: int) -> None:
    """Count one finished task of ``run``."""
    _completions.done(run, total)
