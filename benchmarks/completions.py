"""How a worker reports the end of a run without a per-task round trip.

A no-op task calls :meth:`Completions.done`; when the ``total``-th task of a run finishes, the
notifier records the wall-clock time once (in Redis for worker processes:
``DONE_KEY_PREFIX + run``), and the producer computes end-to-end time from it.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable

__all__ = ["DONE_KEY_PREFIX", "Completions", "Notifier", "env_notifier", "redis_notifier"]

DONE_KEY_PREFIX = "chicory-bench:done:"

Notifier = Callable[[str, float], None]


class Completions:
    """Counts finished no-op tasks per run and reports the run's last completion once.

    Args:
        notify: Called with ``(run, time.time())`` when a run's ``total``-th task finishes.
    """

    def __init__(self, notify: Notifier) -> None:
        self._notify = notify
        self._counts: Counter[str] = Counter()

    def done(self, run: str, total: int) -> None:
        """Record one finished task of ``run``; notify when it is the ``total``-th."""
        self._counts[run] += 1
        if self._counts[run] == total:
            del self._counts[run]
            self._notify(run, time.time())


def redis_notifier(url: str) -> Notifier:
    """A notifier that SETs ``DONE_KEY_PREFIX + run`` to the completion time in Redis."""
    import redis

    client = redis.Redis.from_url(url)

    def notify(run: str, at: float) -> None:
        client.set(DONE_KEY_PREFIX + run, repr(at), ex=3600)

    return notify


def env_notifier() -> Notifier:
    """The notifier of a worker process: Redis at ``$BENCH_DONE_URL``, else none."""
    url = os.environ.get("BENCH_DONE_URL")
    if url:
        return redis_notifier(url)
    return lambda run, at: None
