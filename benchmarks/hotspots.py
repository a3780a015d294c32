"""Where the time goes: cProfile of the producer, the worker process and memory://.

Usage (from the repository root, Redis on 127.0.0.1:6379, database 13 flushed)::

    .venv/bin/python benchmarks/hotspots.py producer   # 20 x delay_many(1,000) onto Redis
    .venv/bin/python benchmarks/hotspots.py worker     # a profiled worker drains 5 x 10,000
    .venv/bin/python benchmarks/hotspots.py roundtrip  # a profiled worker, 5 x 2,000 add
    .venv/bin/python benchmarks/hotspots.py memory     # memory:// drain, one process

Prints the top functions by own time and by cumulative time. Profiling roughly doubles the
cost of every Python call, so read the shares, not the absolute times. Where a lone round
trip at 200 tasks/s spends its time is ``benchmarks/latency_split.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import pstats
import sys
import tempfile
from pathlib import Path

import chicory_bench
import redis
from chicory_app import build_app
from common import PYTHON, VENV_BIN, Settings, child_process
from driver import measure_drain, measure_roundtrip, redis_done_waiter


def _print(stats: pstats.Stats, top: int) -> None:
    for order in ("tottime", "cumulative"):
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats(order).print_stats(top)
        text = out.getvalue()
        print(text[text.index("   ncalls") :] if "   ncalls" in text else text)


async def _producer(settings: Settings) -> None:
    app = build_app(settings.chicory_url("hotspots"), lambda run, at: None)
    task = app.tasks["bench.noop_alo"]
    await task.delay_many([("warm-up", 1)] * 10)
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(20):
        await task.delay_many([("run", 10_000)] * 1_000)
    profiler.disable()
    await app.close()
    _print(pstats.Stats(profiler), 30)


async def _worker(settings: Settings, scenario: str) -> None:
    url = settings.chicory_url("hotspots")
    out = Path(tempfile.mkdtemp()) / "worker.prof"
    argv = [PYTHON, "-m", "cProfile", "-o", str(out), str(VENV_BIN / "chicory")]
    argv += ["--log-level", "WARNING", "worker", "chicory_app:app"]
    argv += ["--concurrency", str(settings.concurrency)]
    argv += ["--prefetch", str(settings.worker_prefetch)]
    env = {"BENCH_CHICORY_URL": url, "BENCH_DONE_URL": settings.redis_url}
    app = build_app(url, lambda run, at: None)
    noop = chicory_bench.enqueuer(app, "bench.noop_alo")
    producer = cProfile.Profile()
    try:
        # Leaving the block stops the worker: it drains, exits and cProfile writes the file.
        with child_process(argv, env=env, log=out.with_suffix(".log")) as proc:
            wait_done = redis_done_waiter(settings.redis_url, alive=lambda: proc.poll() is None)
            await measure_drain(noop, wait_done, 500, 100, timeout=60)
            producer.enable()
            for _ in range(5):
                if scenario == "worker":
                    measured = await measure_drain(noop, wait_done, 10_000, settings.batch)
                else:
                    _call, call_many = chicory_bench.round_trips(app)
                    measured = await measure_roundtrip(call_many, 2_000)
                print({k: round(v, 1) for k, v in measured.values.items()})
            producer.disable()
    finally:
        await app.close()
    print("== the worker process")
    _print(pstats.Stats(str(out)), 40)
    if scenario == "roundtrip":
        print("== the producer (enqueue and result waiting)")
        _print(pstats.Stats(producer), 30)


async def _memory(settings: Settings) -> None:
    logging.getLogger("chicory.worker").setLevel(logging.ERROR)
    profiler = cProfile.Profile()
    profiler.enable()
    await chicory_bench.memory_rep(settings)
    profiler.disable()
    _print(pstats.Stats(profiler), 40)


def main() -> int:
    """Run one profiling scenario and print its hot spots."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("scenario", choices=("producer", "worker", "roundtrip", "memory"))
    args = parser.parse_args()
    settings = Settings()
    client = redis.Redis(host=settings.host, port=settings.port, db=settings.db)
    client.flushdb()
    try:
        if args.scenario == "producer":
            asyncio.run(_producer(settings))
        elif args.scenario == "memory":
            asyncio.run(_memory(settings))
        else:
            asyncio.run(_worker(settings, args.scenario))
    finally:
        client.flushdb()
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
