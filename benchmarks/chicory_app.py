"""The Chicory app the benchmarks drive: no-op tasks of both delivery modes, ``add``
and ``stamp``.

Imported by the producer (``chicory_bench``) and by the worker process
(``chicory worker chicory_app:app``, run from ``benchmarks/``). The worker process reads its
settings from the environment:

* ``BENCH_CHICORY_URL``: the broker URL (the result backend defaults to the same Redis).
* ``BENCH_DONE_URL``: a plain Redis URL where the end of each no-op run is recorded once
  (see :mod:`completions`).
"""

from __future__ import annotations

import os
import time

from completions import Completions, Notifier, env_notifier

import chicory_memory.plugin
import chicory_redis.plugin
from chicory import Chicory, DeliveryMode

__all__ = ["app", "build_app"]


def build_app(url: str, notify: Notifier) -> Chicory:
    """Build the benchmark app on ``url``; finished runs of no-op tasks go to ``notify``."""
    # The two brokers benchmarked, registered by hand rather than through the installed entry
    # points: compare.py runs an older revision's packages against this checkout's
    # environment, whose other plugins may need a newer core than that revision's.
    chicory = Chicory(
        broker=url,
        load_entry_points=False,
        plugins=[chicory_memory.plugin, chicory_redis.plugin],
    )
    completions = Completions(notify)

    @chicory.task(
        name="bench.noop_alo", delivery_mode=DeliveryMode.AT_LEAST_ONCE, ignore_result=True
    )
    async def noop_alo(run: str, total: int) -> None:
        completions.done(run, total)

    @chicory.task(
        name="bench.noop_amo", delivery_mode=DeliveryMode.AT_MOST_ONCE, ignore_result=True
    )
    async def noop_amo(run: str, total: int) -> None:
        completions.done(run, total)

    @chicory.task(name="bench.add")
    async def add(x: int, y: int) -> int:
        return x + y

    @chicory.task(name="bench.stamp")
    async def stamp() -> float:
        """When the task ran (wall clock): splits a round trip into its two halves."""
        return time.time()

    return chicory


app = build_app(os.environ.get("BENCH_CHICORY_URL", "memory://"), env_notifier())
