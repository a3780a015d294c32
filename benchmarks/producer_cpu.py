"""Producer CPU per single call: the measure to compare changes of the producer path by.

Wall-clock rates move with whatever else the machine runs; the CPU time the producer
process spends per call moves much less. This runs, in this process against one
``chicory worker`` process on Redis (as ``benchmarks/single_calls.py`` does):

* ``--bursts`` bursts of ``--calls`` concurrent ``delay()`` + ``get()`` calls, and reports the
  producer's CPU (user + system, ``time.process_time``) per call: the fastest burst and
  the median;
* ``--lone`` sequential ``delay()`` + ``get()`` round trips, one at a time, and the
  producer's CPU per round trip (what a lone call costs; the batching must not add to it).

``--profile FILE`` also writes a cProfile of the bursts (``python -m pstats FILE``).
``--instructions`` counts the producer's instructions per call instead, with ``valgrind
--tool=callgrind`` (the worker process is not traced): the difference between a run of 4
bursts and one of 1, divided by 3 bursts' calls, so start-up and warm-up cancel out.
Repeatable to about 1% whatever else the machine runs; copies of memory count byte by
byte (``rep movsb``), so a change that copies less looks bigger there than in CPU time.

Usage (from the repository root, with the ``bench`` dependency group installed; it flushes
database 13 of the Redis it uses, so point it at a server of your own)::

    .venv/bin/python benchmarks/producer_cpu.py --port 6390
    .venv/bin/python benchmarks/producer_cpu.py --port 6390 --instructions
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import VENV_BIN, Settings, child_process
from single_calls import WARMUP_CALLS, _flush

__all__ = ["measure"]


async def _burst(add: Any, calls: int) -> float:
    """``calls`` concurrent delay()+get(); the producer's CPU seconds."""

    async def one(x: int) -> None:
        result = await add.delay(x, 1)
        if await result.get(timeout=120) != x + 1:
            raise RuntimeError(f"add({x}, 1) came back wrong")

    cpu = time.process_time()
    await asyncio.gather(*(one(i) for i in range(calls)))
    return time.process_time() - cpu


async def measure(
    settings: Settings, calls: int, bursts: int, lone: int, profile: Path | None
) -> dict[str, float]:
    """Bursts and lone round trips against one fresh worker process; µs of CPU per call."""
    from chicory_app import build_app

    url = settings.chicory_url(f"pc{uuid.uuid4().hex[:8]}")
    env = {"BENCH_CHICORY_URL": url, "BENCH_DONE_URL": settings.redis_url}
    argv = [str(VENV_BIN / "chicory"), "--log-level", "WARNING", "worker", "chicory_app:app"]
    argv += ["--concurrency", str(settings.concurrency), "--prefetch"]
    argv += [str(settings.worker_prefetch)]
    app = build_app(url, lambda run, at: None)
    add = app.tasks["bench.add"]
    profiler = cProfile.Profile() if profile is not None else None
    try:
        with tempfile.TemporaryDirectory() as scratch:
            log = Path(scratch) / "worker.log"
            with child_process(argv, env=env, log=log) as proc:
                await _burst(add, WARMUP_CALLS)
                per_call = []
                for _ in range(bursts):
                    if profiler is not None:
                        profiler.enable()
                    per_call.append(await _burst(add, calls) / calls * 1e6)
                    if profiler is not None:
                        profiler.disable()
                cpu = time.process_time()
                for x in range(lone):
                    await (await add.delay(x, 1)).get(timeout=60)
                lone_cpu = (time.process_time() - cpu) / max(lone, 1) * 1e6
                if proc.poll() is not None:
                    raise RuntimeError(f"the worker exited early:\n{log.read_text()[-2000:]}")
    finally:
        await app.close()
    if profiler is not None and profile is not None:
        profiler.dump_stats(profile)
    return {
        "burst_min_us": min(per_call),
        "burst_median_us": statistics.median(per_call),
        "lone_us": lone_cpu,
    }


def instructions(port: int, calls: int) -> float:
    """Instructions of this process per concurrent call, by callgrind (see above)."""
    counts = []
    for bursts in (1, 4):
        argv = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
        argv += [sys.executable, __file__, "--port", str(port), "--calls", str(calls)]
        argv += ["--bursts", str(bursts), "--lone", "0"]
        done = subprocess.run(argv, check=True, capture_output=True, text=True)
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise RuntimeError(f"no instruction count from valgrind:\n{done.stderr[-2000:]}")
        counts.append(int(found.group(1)))
    return (counts[1] - counts[0]) / (3 * calls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=Settings.port)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--bursts", type=int, default=10)
    parser.add_argument("--lone", type=int, default=1_000)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the bursts here")
    parser.add_argument(
        "--instructions", action="store_true", help="count instructions per call (valgrind)"
    )
    args = parser.parse_args()
    if args.instructions:
        per_call = instructions(args.port, args.calls)
        print(f"producer instructions per concurrent delay()+get(): {per_call:,.0f}")
        return
    settings = dataclasses.replace(Settings(), port=args.port)
    _flush(settings)
    try:
        values = asyncio.run(measure(settings, args.calls, args.bursts, args.lone, args.profile))
    finally:
        _flush(settings)
    print(
        f"producer CPU per call: bursts of {args.calls} concurrent delay()+get(): "
        f"{values['burst_min_us']:.1f} us fastest, {values['burst_median_us']:.1f} us median "
        f"of {args.bursts}; lone round trip: {values['lone_us']:.1f} us"
    )


if __name__ == "__main__":
    sys.exit(main())
