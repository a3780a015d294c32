"""PostgreSQL side by side: Chicory, pgqueuer and procrastinate drain the same workload on
the same server, in one run, and one table compares them.

Usage (from the repository root, after ``uv sync --group bench``)::

    .venv/bin/python benchmarks/postgres_peers.py                 # 10,000 tasks, 3 runs
    .venv/bin/python benchmarks/postgres_peers.py --tasks 1000 --runs 1
    .venv/bin/python benchmarks/postgres_peers.py --server postgresql://postgres@127.0.0.1:5432/postgres

Every drain gets a database of its own on ``--server`` (``chicory_bench_<random>``), its
schema installed by the system's own tooling (``chicory postgres migrate``, ``pgq install``,
``procrastinate schema --apply``), dropped afterwards. Each drain runs in a fresh producer
process with two fresh worker processes (see ``pg_drain.py`` for the measure, the same for
every system, and ``peers/pgqueuer_bench.py`` and ``peers/procrastinate_bench.py`` for each
peer's settings and delivery guarantee). Runs alternate the systems, so slow drift of the
machine touches them alike. The load average is printed with the results: rates on a shared
machine say as much about the other processes as about these.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import psycopg

from chicory import Chicory

try:
    from common import PYTHON, VENV_BIN, stop_process
    from peers.pgqueuer_bench import PgqueuerTarget
    from peers.procrastinate_bench import ProcrastinateTarget
    from pg_drain import Target, drain, fresh_database, run_tool
    from sqlite import producer
except ModuleNotFoundError as missing:  # the peers come from the `bench` dependency group
    raise SystemExit(
        f"{missing.name} is not installed: run `uv sync --group bench` first"
    ) from None

__all__ = ["LOGS", "ChicoryTarget", "main"]

LOGS = Path(tempfile.gettempdir()) / "chicory-postgres-peers-logs"
"""Where the worker logs of the last run go (emptied at the start of a run)."""


class _ChicoryProducer:
    def __init__(self, app: Chicory, mode: str) -> None:
        self._app = app
        self._task = app.tasks[f"bench.noop_{mode}"]

    async def enqueue(self, count: int) -> None:
        await self._task.delay_many([()] * count)

    async def remaining(self) -> int:
        counts = await (await self._app.connected_broker()).counts("default")
        return counts.ready + counts.in_flight + counts.delayed

    async def consumers(self) -> int:
        broker = await self._app.connected_broker()
        (stats,) = await broker.queue_stats(["default"])  # type: ignore[attr-defined]
        return int(stats.consumers)


class ChicoryTarget:
    """Chicory's PostgreSQL broker as a ``pg_drain.Target``: the worker app and settings of
    ``benchmarks/postgres.py`` (``sqlite_app``, concurrency 64, prefetch 192)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.name = f"Chicory ({'at-least-once' if mode == 'alo' else 'at-most-once'})"

    def install(self, url: str) -> None:
        """``chicory postgres migrate`` on ``url``."""
        run_tool([str(VENV_BIN / "chicory"), "postgres", "migrate", url])

    def worker(self, url: str, done: Path) -> tuple[list[str], dict[str, str]]:
        """``chicory worker sqlite_app:app`` on ``url``."""
        argv = [PYTHON, "-m", "chicory.cli", "worker", "sqlite_app:app"]
        argv += ["--concurrency", "64", "--prefetch", "192"]
        return argv, {"CHICORY_BROKER_URL": url, "BENCH_SQLITE_DONE": str(done)}

    @contextlib.asynccontextmanager
    async def producer(self, url: str) -> AsyncIterator[_ChicoryProducer]:
        """The producer app of ``benchmarks/sqlite.py`` on ``url``."""
        app = producer(url)
        try:
            yield _ChicoryProducer(app, self.mode)
        finally:
            await app.close()


def _target(key: str) -> Target:
    if key.startswith("chicory_"):
        return ChicoryTarget(key.removeprefix("chicory_"))
    if key == "pgqueuer":
        return PgqueuerTarget()
    return ProcrastinateTarget()


SYSTEMS = {
    "chicory_alo": "at least once (claimed again when its 30 s lease runs out)",
    "chicory_amo": "at most once (acked on receipt: lost)",
    "pgqueuer": "at least once (re-picked after a 30 s heartbeat timeout)",
    "procrastinate": "stays `doing` until the application retries it (stalled-job recipe)",
}
"""Every system measured, with what becomes of its tasks when a worker process dies."""


def _child(key: str, url: str, directory: Path, tasks: int) -> None:
    os.environ.pop("CHICORY_BACKEND_URL", None)
    print(json.dumps(anyio.run(drain, _target(key), url, directory, tasks)))


def _measure(key: str, server: str, scratch: Path, tasks: int) -> dict[str, float]:
    """One drain of ``key`` in a fresh process, on a fresh database of its own."""
    directory = Path(tempfile.mkdtemp(prefix=f"{key}-", dir=scratch))
    with fresh_database(server) as url:
        argv = [PYTHON, __file__, "--child", key, "--url", url]
        argv += ["--directory", str(directory), "--tasks", str(tasks)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True, text=True)
        try:
            out, _ = proc.communicate(timeout=1200)
        finally:
            stop_process(proc)  # type: ignore[arg-type]
    if proc.returncode != 0:
        raise RuntimeError(f"the {key} drain failed (exit {proc.returncode}); logs: {directory}")
    return dict(json.loads(out.splitlines()[-1]))


def _spread(values: list[float]) -> str:
    middle = statistics.median(values)
    digits = 0 if middle >= 100 else 1
    if len(values) == 1:
        return f"{middle:,.{digits}f}"
    return f"{middle:,.{digits}f} ({min(values):,.{digits}f}-{max(values):,.{digits}f})"


CPU_KEYS = ("cpu_us", "producer_cpu_us", "server_cpu_us")
"""The CPU measures whose sum is a system's CPU per task."""


def _total_cpu(runs: list[dict[str, float]]) -> float | None:
    """The sum of the median CPU measures per task; ``None`` when one is missing."""
    if not all(name in run for run in runs for name in CPU_KEYS):
        return None
    return sum(statistics.median(run[name] for run in runs) for name in CPU_KEYS)


def _advantage(results: dict[str, list[dict[str, float]]], key: str) -> str:
    """Chicory at least once's median end-to-end rate over ``key``'s, and ``key``'s total
    CPU per task over Chicory at least once's."""
    if "chicory_alo" not in results:
        return "n/a"
    ours, theirs = results["chicory_alo"], results[key]
    rate = statistics.median(r["end_to_end"] for r in ours) / statistics.median(
        r["end_to_end"] for r in theirs
    )
    our_cpu, their_cpu = _total_cpu(ours), _total_cpu(theirs)
    if not our_cpu or their_cpu is None:
        return f"{rate:.2f}x / n/a"
    return f"{rate:.2f}x / {their_cpu / our_cpu:.2f}x"


def _table(results: dict[str, list[dict[str, float]]]) -> list[str]:
    columns = (
        ("enqueue", "enqueue, tasks/s"),
        ("end_to_end", "end to end, tasks/s"),
        ("cpu_us", "worker CPU per task, us"),
        ("producer_cpu_us", "producer CPU per task, us"),
        ("server_cpu_us", "PostgreSQL CPU per task, us"),
    )
    labels = [label for _, label in columns]
    labels += ["Chicory's advantage: rate / total CPU", "on a worker crash"]
    lines = ["| system | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for key, runs in results.items():
        cells = [
            _spread([run[name] for run in runs]) if all(name in run for run in runs) else "n/a"
            for name, _ in columns
        ]
        cells += [_advantage(results, key), SYSTEMS[key]]
        lines.append(f"| {_target(key).name} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    """Run every system's drain ``--runs`` times, interleaved; print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--server",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a server URL; every drain creates and drops a database of its own there",
    )
    parser.add_argument("--tasks", type=int, default=10_000, help="no-op tasks per drain")
    parser.add_argument("--runs", type=int, default=3, help="drains per system")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated subset of {','.join(SYSTEMS)} (default: all)",
    )
    parser.add_argument("--child", choices=tuple(SYSTEMS), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--directory", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.url, args.directory, args.tasks)
        return
    keys = [key.strip() for key in args.systems.split(",") if key.strip()]
    unknown = sorted(set(keys) - set(SYSTEMS))
    if unknown:
        parser.error(f"unknown system(s) {', '.join(unknown)}; choose from {', '.join(SYSTEMS)}")
    with psycopg.connect(args.server, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        commit = conn.execute("SHOW synchronous_commit").fetchone()
    load_before = os.getloadavg()
    results: dict[str, list[dict[str, float]]] = {key: [] for key in keys}
    shutil.rmtree(LOGS, ignore_errors=True)
    LOGS.mkdir(parents=True)
    for run in range(1, args.runs + 1):
        for key in keys:
            values = _measure(key, args.server, LOGS, args.tasks)
            results[key].append(values)
            print(
                f"run {run} {key}: {values['end_to_end']:,.0f} tasks/s end to end",
                file=sys.stderr,
                flush=True,
            )
    load_after = os.getloadavg()
    print(
        f"PostgreSQL {row[0] if row else '?'} (synchronous_commit "
        f"{commit[0] if commit else '?'}), Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs; load average (1/5/15 min) before "
        f"{'/'.join(f'{v:.1f}' for v in load_before)}, after "
        f"{'/'.join(f'{v:.1f}' for v in load_after)}"
    )
    print(
        f"drain: {args.tasks:,} no-op tasks enqueued in batches of 1,000 while two worker "
        f"processes consume, {args.runs} run(s) per system: median (min-max)"
    )
    print("\n".join(_table(results)))


if __name__ == "__main__":
    main()
