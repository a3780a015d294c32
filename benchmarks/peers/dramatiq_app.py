"""The Dramatiq app of the peer benchmark: Dramatiq's Redis broker and one no-op actor.

The worker process (``dramatiq peers.dramatiq_app``) reads ``BENCH_PEER_URL``,
``BENCH_DONE_URL`` and ``BENCH_PEER_QUEUE`` from the environment. Dramatiq acks after the
actor ran (at least once).
"""

from __future__ import annotations

import os
import threading

import dramatiq
from completions import Completions, env_notifier
from dramatiq.brokers.redis import RedisBroker

__all__ = ["broker", "noop"]

_URL = os.environ.get("BENCH_PEER_URL", "redis://127.0.0.1:6379/13")
_QUEUE = os.environ.get("BENCH_PEER_QUEUE", "dramatiq-bench")

broker = RedisBroker(url=_URL, namespace="dramatiq-bench")  # type: ignore[no-untyped-call]
dramatiq.set_broker(broker)
_completions = Completions(env_notifier())
_lock = threading.Lock()


@dramatiq.actor(actor_name="bench_noop", queue_name=_QUEUE, max_retries=0)
def noop(run: str, total: int) -> None:
    """Count one finished task of ``run``."""
    with _lock:
        _completions.done(run, total)
