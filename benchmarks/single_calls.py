"""Concurrent single calls: many coroutines each enqueue one task and await its result.

The shape of a busy web server handling one task per request: ``--calls`` coroutines
started at once, each running ``await (await add.delay(i, 1)).get()`` — single calls, no
``delay_many`` — against a separate ``chicory worker`` process (concurrency 64, prefetch
192) on Redis. Then a lone caller: ``--lone`` sequential ``delay()`` + ``get()`` round trips,
one at a time, for the latency a single call sees when nothing else is going on.

Reported per run, each measured in a fresh process with a fresh worker:

* ``rate``: calls / wall time of the concurrent burst (first ``delay`` to last result);
* ``cpu_us``: the producer process's CPU (user + system) over the burst, per call;
* ``lone_p50_us`` / ``lone_p99_us``: the lone round trips' latency.

Usage (from the repository root, with the ``bench`` dependency group installed, as
``benchmarks/run`` does; it flushes database 13 of the Redis it uses, so point it at a
server of your own)::

    .venv/bin/python benchmarks/single_calls.py --port 6390            # 5 runs of this checkout
    .venv/bin/python benchmarks/compare.py BASE --scenario concurrent --port 6390

The second line runs an earlier revision and this checkout in interleaved pairs.
``--lone-publish`` measures, in this process on ``memory://``, what the batching path costs
a publish awaited alone against publishing straight to the broker; ``--lone-round-trips``
compares lone round trips on Redis with and without it, in alternating rounds in one process
against one worker.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from common import VENV_BIN, Settings, child_process, percentile

__all__ = ["measure"]

WARMUP_CALLS = 200


async def _burst(add: Any, calls: int) -> tuple[float, float]:
    """``calls`` concurrent delay()+get(); (wall seconds, producer CPU seconds)."""

    async def one(x: int) -> None:
        result = await add.delay(x, 1)
        if await result.get(timeout=120) != x + 1:
            raise RuntimeError(f"add({x}, 1) came back wrong")

    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(calls)))
    return time.perf_counter() - start, time.process_time() - cpu


async def measure(settings: Settings, calls: int, lone: int) -> dict[str, float]:
    """One run: a fresh worker process, a warm-up, the burst, then the lone round trips."""
    from chicory_app import build_app

    url = settings.chicory_url(f"cc{uuid.uuid4().hex[:8]}")
    env = {"BENCH_CHICORY_URL": url, "BENCH_DONE_URL": settings.redis_url}
    argv = [str(VENV_BIN / "chicory"), "--log-level", "WARNING", "worker", "chicory_app:app"]
    argv += ["--concurrency", str(settings.concurrency), "--prefetch"]
    argv += [str(settings.worker_prefetch)]
    app = build_app(url, lambda run, at: None)
    add = app.tasks["bench.add"]
    try:
        with tempfile.TemporaryDirectory() as scratch:
            log = Path(scratch) / "worker.log"
            with child_process(argv, env=env, log=log) as proc:
                await _burst(add, WARMUP_CALLS)
                wall, cpu = await _burst(add, calls)
                latencies = []
                for x in range(lone):
                    start = time.perf_counter()
                    await (await add.delay(x, 1)).get(timeout=60)
                    latencies.append(time.perf_counter() - start)
                if proc.poll() is not None:
                    raise RuntimeError(f"the worker exited early:\n{log.read_text()[-2000:]}")
    finally:
        await app.close()
    return {
        "rate": calls / wall,
        "cpu_us": cpu / calls * 1e6,
        "lone_p50_us": statistics.median(latencies) * 1e6,
        "lone_p99_us": percentile(latencies, 99) * 1e6,
    }


def _flush(settings: Settings) -> None:
    import redis

    client = redis.Redis(host=settings.host, port=settings.port, db=settings.db)
    try:
        client.flushdb()
    finally:
        client.close()


async def run_once(settings: Settings, calls: int, lone: int) -> dict[str, float]:
    """:func:`measure` between two flushes of the benchmark database."""
    _flush(settings)
    try:
        return await measure(settings, calls, lone)
    finally:
        _flush(settings)


async def lone_publish(calls: int = 5_000, rounds: int = 15) -> dict[str, float]:
    """What batching costs a lone caller: µs per publish of one message on ``memory://``
    awaited one at a time, through the app's batching path and straight to the broker,
    in alternating rounds. No Redis: the difference is all producer CPU. Each path's
    fastest round is reported: on a shared machine the others measure the neighbours."""
    from chicory import Chicory
    from chicory.broker import OutgoingMessage

    app = Chicory("memory://")
    await app.connected_broker()
    message = OutgoingMessage(body=b"x" * 200, headers={})
    paths = {
        "batched": lambda: app.publish_one("q", message),  # the path of delay()
        "direct": lambda: app._publish_now("q", [message]),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(rounds):
        for name, publish in paths.items():
            start = time.perf_counter()
            for _ in range(calls):
                await publish()
            times[name].append((time.perf_counter() - start) / calls * 1e6)
    await app.close()
    return {f"{name}_us": min(values) for name, values in times.items()}


async def lone_round_trips(settings: Settings, rounds: int = 8, calls: int = 150) -> dict[str, Any]:
    """Lone ``delay()`` + ``get()`` round trips against one worker process, in alternating
    rounds through the batching path and with ``delay()``'s publish sent straight to the
    broker (the path before batching existed): median of each round's p50, in µs."""
    from chicory_app import build_app

    url = settings.chicory_url(f"cl{uuid.uuid4().hex[:8]}")
    env = {"BENCH_CHICORY_URL": url, "BENCH_DONE_URL": settings.redis_url}
    argv = [str(VENV_BIN / "chicory"), "--log-level", "WARNING", "worker", "chicory_app:app"]
    app = build_app(url, lambda run, at: None)
    add = app.tasks["bench.add"]
    batched = app.publish_one

    async def direct(queue: str, message: Any) -> None:
        await app._publish_now(queue, (message,))

    rounds_p50: dict[str, list[float]] = {"batched": [], "direct": []}
    try:
        with (
            tempfile.TemporaryDirectory() as scratch,
            child_process(argv, env=env, log=Path(scratch) / "worker.log"),
        ):
            for x in range(WARMUP_CALLS):
                await (await add.delay(x, 1)).get(timeout=60)
            for _ in range(rounds):
                for name, path in (("batched", batched), ("direct", direct)):
                    app.publish_one = path  # type: ignore[method-assign]
                    latencies = []
                    for x in range(calls):
                        start = time.perf_counter()
                        await (await add.delay(x, 1)).get(timeout=60)
                        latencies.append(time.perf_counter() - start)
                    rounds_p50[name].append(statistics.median(latencies) * 1e6)
    finally:
        app.publish_one = batched  # type: ignore[method-assign]
        await app.close()
    return {name: (statistics.median(v), v) for name, v in rounds_p50.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=Settings.port)
    parser.add_argument("--calls", type=int, default=2_000)
    parser.add_argument("--lone", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--lone-publish",
        action="store_true",
        help="only measure what batching costs one publish awaited alone (memory://)",
    )
    parser.add_argument(
        "--lone-round-trips",
        action="store_true",
        help="only compare lone round trips with and without the batching path (Redis)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.lone_publish:
        values = asyncio.run(lone_publish())
        print(
            f"one publish awaited alone (fastest round): {values['batched_us']:.1f} us through "
            f"the batching path, {values['direct_us']:.1f} us straight to the broker"
        )
        return
    settings = dataclasses.replace(Settings(), port=args.port)
    if args.lone_round_trips:
        _flush(settings)
        try:
            found = asyncio.run(lone_round_trips(settings))
        finally:
            _flush(settings)
        for name, (median, values) in found.items():
            listed = ", ".join(f"{v:.0f}" for v in values)
            print(f"lone round trip p50, {name}: {median:.0f} us (rounds: {listed})")
        return
    if args.child:
        print(json.dumps(asyncio.run(run_once(settings, args.calls, args.lone))))
        return
    import subprocess

    runs = []
    for _ in range(args.runs):
        argv = [sys.executable, __file__, "--child", "--port", str(args.port)]
        argv += ["--calls", str(args.calls), "--lone", str(args.lone)]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        values = json.loads(out.splitlines()[-1])
        runs.append(values)
        print(describe(values), flush=True)
    medians = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
    print("median:", describe(medians))


def describe(values: dict[str, float]) -> str:
    """One line for a run's numbers."""
    return (
        f"{values['rate']:,.0f} calls/s, {values['cpu_us']:.1f} us producer CPU per call; "
        f"lone round trip p50 {values['lone_p50_us']:.0f} us, p99 {values['lone_p99_us']:.0f} us"
    )


if __name__ == "__main__":
    sys.exit(main())
