"""The SQLite broker's benchmark: drain across two worker processes, round trip, latency.

Usage (from the repository root)::

    .venv/bin/python benchmarks/sqlite.py              # 10,000-task drains, ~1 minute
    .venv/bin/python benchmarks/sqlite.py --tasks 2000 --runs 1

It touches only a database file in a temporary directory of its own, deleted afterwards.

* **drain**: ``--tasks`` no-op tasks (``ignore_result=True``) per delivery mode, enqueued with
  ``delay_many`` in batches of 1,000 while two ``chicory worker`` processes (concurrency 64,
  prefetch 192 each) consume the same file. *Enqueue*: tasks / time of the ``delay_many``
  calls. *End to end*: tasks / (first enqueue -> the last task's end, as the workers report
  it when they exit). *Worker CPU per task*: user + system CPU of both worker processes from
  the first enqueue to the end, divided by the tasks.
* **round trip**: one worker process; ``await (await add.delay(1, 2)).get()`` one at a time.
* **latency**: one worker process; an open loop of ``--rate`` calls per second for
  ``--seconds`` seconds, each awaited concurrently; enqueue -> result latency percentiles.

The machine's load average is printed with the results: rates on a shared machine say as
much about the other processes as about this one.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio

from chicory import Chicory, DeliveryMode

HERE = Path(__file__).resolve().parent
TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (from ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _reports(directory: Path, pattern: str) -> list[list[str]]:
    """The ``<count> <last end>`` lines the worker processes wrote at exit."""
    return [path.read_text().split() for path in directory.glob(pattern)]


@contextmanager
def workers(
    url: str, done: Path, count: int, *, concurrency: int, prefetch: int
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run ``count`` worker processes on ``url``; SIGTERM and wait for them afterwards."""
    env = {
        **os.environ,
        "CHICORY_BROKER_URL": url,
        "BENCH_SQLITE_DONE": str(done),
        "PYTHONPATH": str(HERE),
    }
    env.pop("CHICORY_BACKEND_URL", None)
    command = [sys.executable, "-m", "chicory.cli", "worker", "sqlite_app:app"]
    options = ["--concurrency", str(concurrency), "--prefetch", str(prefetch)]
    procs = [
        subprocess.Popen(
            [*command, *options],
            cwd=HERE,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(done.parent / f"worker{n}.log").open("wb"),
        )
        for n in range(count)
    ]
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def producer(url: str) -> Chicory:
    """The producer side of ``sqlite_app``: the same task names and signatures."""
    app = Chicory(broker=url)

    @app.task(name="bench.noop_alo", delivery_mode=DeliveryMode.AT_LEAST_ONCE, ignore_result=True)
    async def noop_alo() -> None: ...

    @app.task(name="bench.noop_amo", delivery_mode=DeliveryMode.AT_MOST_ONCE, ignore_result=True)
    async def noop_amo() -> None: ...

    @app.task(name="bench.add")
    async def add(x: int, y: int) -> int: ...

    return app


async def _consumers(app: Chicory, count: int) -> None:
    broker = await app.connected_broker()
    with anyio.fail_after(60):
        while True:
            (stats,) = await broker.queue_stats(["default"])  # type: ignore[attr-defined]
            if stats.consumers >= count:
                return
            await anyio.sleep(0.1)


async def drain(directory: Path, mode: str, tasks: int) -> dict[str, float]:
    """One drain of ``tasks`` no-ops of ``mode`` across two worker processes."""
    return await drain_on(
        f"sqlite:///{directory / f'drain-{mode}.sqlite3'}", directory, mode, tasks
    )


async def drain_on(url: str, directory: Path, mode: str, tasks: int) -> dict[str, float]:
    """One drain of ``tasks`` no-ops of ``mode`` on ``url`` across two worker processes
    (any broker: the PostgreSQL benchmark measures its own with it)."""
    done = directory / f"done-{mode}"
    app = producer(url)
    task = app.tasks[f"bench.noop_{mode}"]
    broker = await app.connected_broker()
    with workers(url, done, 2, concurrency=64, prefetch=192) as procs:
        await _consumers(app, 2)
        cpu_before = sum(_cpu_seconds(p.pid) for p in procs)
        start = time.time()
        for offset in range(0, tasks, 1000):
            await task.delay_many([()] * min(1000, tasks - offset))
        enqueued = time.time()
        while True:
            counts = await broker.counts("default")
            if counts.ready == counts.in_flight == counts.delayed == 0:
                break
            await anyio.sleep(0.05)
        cpu = sum(_cpu_seconds(p.pid) for p in procs) - cpu_before
    reports = _reports(directory, f"done-{mode}.*")
    ran = sum(int(count) for count, _ in reports)
    end = max(float(last) for _, last in reports)
    await app.close()
    assert ran == tasks, f"{ran} tasks ran, {tasks} were enqueued"
    return {
        "enqueue": tasks / (enqueued - start),
        "end_to_end": tasks / (end - start),
        "cpu_us": cpu / tasks * 1e6,
    }


async def round_trips(directory: Path, calls: int, rate: float, seconds: float) -> dict[str, float]:
    """Sequential round trips, then an open loop, on one worker process."""
    return await round_trips_on(
        f"sqlite:///{directory / 'calls.sqlite3'}", directory, calls, rate, seconds
    )


async def round_trips_on(
    url: str, directory: Path, calls: int, rate: float, seconds: float
) -> dict[str, float]:
    """Sequential round trips, then an open loop, on ``url`` with one worker process."""
    app = producer(url)
    add = app.tasks["bench.add"]
    out: dict[str, float] = {}
    with workers(url, directory / "done-calls", 1, concurrency=64, prefetch=64):
        await _consumers(app, 1)
        times = []
        for _ in range(calls):
            began = time.perf_counter()
            assert await (await add.delay(1, 2)).get(timeout=60) == 3
            times.append(time.perf_counter() - began)
        out["rt_rate"] = calls / sum(times)
        out["rt_p50_ms"] = statistics.median(times) * 1e3
        out["rt_p99_ms"] = statistics.quantiles(times, n=100)[98] * 1e3
        latencies: list[float] = []

        async def one() -> None:
            began = time.perf_counter()
            assert await (await add.delay(1, 2)).get(timeout=60) == 3
            latencies.append(time.perf_counter() - began)

        async with anyio.create_task_group() as tg:
            opened = time.perf_counter()
            for n in range(int(rate * seconds)):
                tg.start_soon(one)
                await anyio.sleep(max(0.0, opened + (n + 1) / rate - time.perf_counter()))
        cuts = statistics.quantiles(latencies, n=100)
        out["lat_p50_ms"] = cuts[49] * 1e3
        out["lat_p95_ms"] = cuts[94] * 1e3
        out["lat_p99_ms"] = cuts[98] * 1e3
        out["lat_max_ms"] = max(latencies) * 1e3
    await app.close()
    return out


def _spread(values: list[float]) -> str:
    middle = statistics.median(values)
    if len(values) == 1:
        return f"{middle:,.0f}"
    return f"{middle:,.0f} ({min(values):,.0f}-{max(values):,.0f})"


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per drain")
    parser.add_argument("--runs", type=int, default=3, help="drains per delivery mode")
    parser.add_argument("--calls", type=int, default=300, help="sequential round trips")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop calls per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="open-loop duration")
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="chicory-sqlite-bench-") as tmp:
        for run in range(args.runs):
            for mode in ("alo", "amo"):
                directory = Path(tmp) / f"run{run}-{mode}"
                directory.mkdir()
                for key, value in (await drain(directory, mode, args.tasks)).items():
                    results.setdefault(f"{mode}_{key}", []).append(value)
        directory = Path(tmp) / "calls"
        directory.mkdir()
        calls = await round_trips(directory, args.calls, args.rate, args.seconds)
    load_after = os.getloadavg()
    print(
        f"SQLite {sqlite3.sqlite_version}, Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; load average (1/5/15 min) before "
        f"{'/'.join(f'{v:.1f}' for v in load_before)}, after "
        f"{'/'.join(f'{v:.1f}' for v in load_after)}"
    )
    print_report(args, results, calls)


def print_report(
    args: argparse.Namespace, results: dict[str, list[float]], calls: dict[str, float]
) -> None:
    """Print the drains' table, the round trips and the open loop (after a first line that
    says what ran where)."""
    print(
        f"drain: {args.tasks:,} no-op tasks, two worker processes (64 / 192 each), "
        f"{args.runs} run(s) per mode: median (min-max)"
    )
    print("| measure | at-least-once | at-most-once |")
    print("|---|---|---|")
    for key, label in (
        ("enqueue", "enqueue (`delay_many`), tasks/s"),
        ("end_to_end", "end to end, tasks/s"),
        ("cpu_us", "worker CPU per task (both processes), us"),
    ):
        print(f"| {label} | {_spread(results[f'alo_{key}'])} | {_spread(results[f'amo_{key}'])} |")
    print(
        f"round trip ({args.calls} sequential `delay` + `get`, one worker process): "
        f"{calls['rt_rate']:,.0f} calls/s, p50 {calls['rt_p50_ms']:.1f} ms, "
        f"p99 {calls['rt_p99_ms']:.1f} ms"
    )
    print(
        f"latency (open loop {args.rate:.0f}/s for {args.seconds:.0f} s): "
        f"p50 {calls['lat_p50_ms']:.1f} ms, p95 {calls['lat_p95_ms']:.1f} ms, "
        f"p99 {calls['lat_p99_ms']:.1f} ms, max {calls['lat_max_ms']:.1f} ms"
    )


if __name__ == "__main__":
    anyio.run(main)
