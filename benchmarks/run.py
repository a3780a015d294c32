"""Run every benchmark and write the results into docs/benchmarks.md.

Usage (from the repository root; ``benchmarks/run`` installs the ``bench`` group first)::

    .venv/bin/python benchmarks/run.py            # the full run (~6 minutes)
    .venv/bin/python benchmarks/run.py --quick    # a ~1 minute smoke run, prints only

Redis must answer on the loopback address given (default ``127.0.0.1:6379``). The harness
uses one dedicated database (default 13), which it flushes before and after the run and
never touches any other. Each repetition runs the floor, Chicory on Redis, Chicory on
memory:// and the peers back to back, so slow drift on the machine affects all alike.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import math
import os
import platform
import socket
import sys
import tempfile
import time
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import chicory_bench
import psutil  # type: ignore[import-untyped]
import redis
import report
from common import Measurement, Settings, in_child

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "benchmarks.md"
LOGS = Path(tempfile.gettempdir()) / "chicory-bench-logs"


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="~1 minute smoke run; no doc write")
    parser.add_argument("--runs", type=int, help="repetitions (default 5, 1 with --quick)")
    parser.add_argument("--host", default="127.0.0.1", help="Redis host (loopback only)")
    parser.add_argument("--port", type=int, default=6379)
    parser.add_argument("--db", type=int, default=13, help="dedicated database, flushed")
    parser.add_argument("--concurrency", type=int, default=64, help="worker concurrency")
    parser.add_argument(
        "--prefetch", type=int, help="Chicory worker prefetch (default: 3 x concurrency)"
    )
    parser.add_argument("--soak-tasks", type=int, help="tasks of the RSS soak run")
    parser.add_argument("--no-peers", action="store_true", help="skip taskiq and Dramatiq")
    parser.add_argument(
        "--output", type=Path, help=f"report file (default {DOC.relative_to(REPO)}, not --quick)"
    )
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> Settings:
    base = Settings(
        host=args.host,
        port=args.port,
        db=args.db,
        concurrency=args.concurrency,
        prefetch=args.prefetch,
    )
    if args.quick:
        base = replace(
            base,
            runs=1,
            drain_tasks=5_000,
            roundtrip_tasks=1_000,
            latency_seconds=3.0,
            soak_tasks=50_000,
        )
    if args.runs:
        base = replace(base, runs=args.runs)
    if args.soak_tasks:
        base = replace(base, soak_tasks=args.soak_tasks)
    return base


def _check_loopback(host: str) -> None:
    address = ipaddress.ip_address(socket.gethostbyname(host))
    if not address.is_loopback:
        raise SystemExit(f"refusing to benchmark against {host} ({address}): loopback only")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _speed_probe() -> float:
    """Milliseconds a fixed pure-Python loop takes (best of 5): how fast this machine is now.

    Shared machines vary by tens of percent over minutes; the probe at the start and the end
    of a run says how fast the machine was while it ran, so runs can be compared.
    """
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i & 7
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _machine(client: redis.Redis) -> dict[str, str]:
    info = client.info("server")
    physical = psutil.cpu_count(logical=False)
    return {
        "CPU": _cpu_model(),
        "cores": f"{psutil.cpu_count()} logical ({physical or '?'} physical)",
        "RAM": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        # Which build: the same version runs pure Python at very different speeds depending
        # on how it was compiled (docs/benchmarks.md, "The interpreter matters").
        "Python": f"{platform.python_implementation()} {platform.python_version()} "
        f"(the virtual environment's base: {sys.base_prefix})",
        "Redis": f"{info['redis_version']} on {client.connection_pool.connection_kwargs['host']}",
        "libraries": ", ".join(
            f"{name} {version(name)}"
            for name in (
                "chicory-core",
                "chicory-redis",
                "redis",
                "hiredis",
                "anyio",
                "taskiq",
                "taskiq-redis",
                "dramatiq",
            )
        ),
        "load average at start (1/5/15 min)": " / ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _run(label: str, module: str, function: str, settings: Settings, *args: object) -> Any:
    """One repetition of ``module.function`` in a fresh process (see ``child.py``)."""
    print(f"  {label} ...", end="", flush=True)
    started = time.perf_counter()
    value = asyncio.run(in_child(module, function, settings, *args))
    print(f" {time.perf_counter() - started:.1f} s", flush=True)
    return value


def _collect(settings: Settings, peers: bool) -> dict[str, list[Measurement]]:
    runs: dict[str, list[Measurement]] = {}

    def one(name: str, label: str, module: str, function: str, *args: object) -> None:
        measured = _run(label, module, function, settings, *args)
        assert isinstance(measured, Measurement)
        runs.setdefault(name, []).append(measured)

    def named(prefix: str, label: str, module: str, function: str, *args: object) -> None:
        measured = _run(label, module, function, settings, *args)
        assert isinstance(measured, dict)
        for name, value in measured.items():
            runs.setdefault(f"{prefix}.{name}", []).append(value)

    fetch = settings.capacity  # the floor reads as much per call as the Chicory worker may
    for rep in range(1, settings.runs + 1):
        print(f"repetition {rep}/{settings.runs}", flush=True)
        one("floor", "floor", "floor", "run_floor", settings.drain_tasks, fetch)
        one("latency_floor", "latency floor", "floor", "run_latency_floor")
        named(
            "redis",
            "chicory on redis",
            "chicory_bench",
            "redis_rep",
            LOGS / "chicory-worker.log",
        )
        for concurrency, prefetch in chicory_bench.SWEEP:
            one(
                f"sweep.{concurrency}.{prefetch}",
                f"chicory on redis, drain at concurrency {concurrency} prefetch {prefetch}",
                "chicory_bench",
                "redis_drain_rep",
                concurrency,
                prefetch,
                LOGS / f"chicory-worker-{concurrency}-{prefetch}.log",
            )
        named("memory", "chicory on memory://", "chicory_bench", "memory_rep")
        one(
            "memory.default_gc",
            "chicory on memory://, collector at its defaults",
            "chicory_bench",
            "memory_default_gc_rep",
        )
        if peers:
            one(
                "taskiq",
                "taskiq",
                "peers.taskiq_bench",
                "taskiq_rep",
                LOGS / "taskiq-worker.log",
            )
            one(
                "dramatiq",
                "dramatiq",
                "peers.dramatiq_bench",
                "dramatiq_rep",
                LOGS / "dramatiq-worker.log",
            )
    print("soak", flush=True)
    one(
        "soak",
        f"{settings.soak_tasks:,} tasks",
        "soak",
        "run_soak",
        LOGS / "chicory-soak-worker.log",
    )
    return runs


def main(argv: list[str] | None = None) -> int:
    """Run the harness; return the exit status."""
    args = _parse(argv)
    settings = _settings(args)
    _check_loopback(settings.host)
    client = redis.Redis(host=settings.host, port=settings.port, db=settings.db)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        raise SystemExit(f"no Redis at {settings.host}:{settings.port}: {exc}") from None
    LOGS.mkdir(parents=True, exist_ok=True)
    for old in LOGS.glob("*.log"):
        old.unlink()
    print(
        f"Redis db {settings.db} on {settings.host}:{settings.port} (flushed); "
        f"worker logs and raw results in {LOGS}",
        flush=True,
    )
    machine = _machine(client)
    probe_start = _speed_probe()
    client.flushdb()
    started = time.perf_counter()
    try:
        runs = _collect(settings, peers=not args.no_peers)
    finally:
        client.flushdb()
        client.close()
    machine["speed probe (1M-iteration Python loop), start / end"] = (
        f"{probe_start:.0f} ms / {_speed_probe():.0f} ms (lower is faster)"
    )
    results = report.Results(runs, machine, settings, time.perf_counter() - started)
    raw = {name: [m.values for m in measured] for name, measured in runs.items()}
    (LOGS / "results.json").write_text(json.dumps({"machine": machine, "runs": raw}, indent=1))
    generated = report.render(results)
    print(generated)
    output = args.output or (None if args.quick else DOC)
    if output is not None:
        report.write_report(output, generated, _template)
        print(f"wrote {output}")
    return 0


def _template() -> str:
    return f"# Benchmarks\n\n{report.START}\n{report.END}\n"


if __name__ == "__main__":
    sys.exit(main())
