"""The PostgreSQL broker's benchmark: drain across two worker processes, round trip, latency.

Usage (from the repository root)::

    .venv/bin/python benchmarks/postgres.py            # 10,000-task drains
    .venv/bin/python benchmarks/postgres.py --tasks 2000 --runs 1
    .venv/bin/python benchmarks/postgres.py --server postgresql://postgres@127.0.0.1:5432/postgres

It creates a database of its own on ``--server`` (``chicory_bench_<random>``) and drops it
afterwards. The measures are those of ``benchmarks/sqlite.py`` (whose worker app and process
helpers it uses), on the same task app, so the two brokers compare line for line:

* **drain**: ``--tasks`` no-op tasks (``ignore_result=True``) per delivery mode, enqueued with
  ``delay_many`` in batches of 1,000 while two ``chicory worker`` processes (concurrency 64,
  prefetch 192 each) consume; enqueue rate, end-to-end rate, worker CPU per task.
* **round trip**: one worker process; ``await (await add.delay(1, 2)).get()`` one at a time
  (results in the PostgreSQL result backend, waiters woken by NOTIFY).
* **latency**: an open loop of ``--rate`` calls per second for ``--seconds`` seconds.

``--synchronous-commit off`` measures the database with commits that do not wait for the WAL
fsync (see "Tuning" in docs/postgres.md); the default is the server's setting. The load
average is printed with the results: rates on a shared machine say as much about the other
processes as about this one.

``benchmarks/postgres_peers.py`` runs this drain beside pgqueuer's and procrastinate's on the
same server, in one run, and prints one table.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import psycopg
from psycopg import sql
from sqlite import drain_on, print_report, round_trips_on


def _database_url(server: str, name: str) -> str:
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


async def drain(url: str, directory: Path, mode: str, tasks: int) -> dict[str, float]:
    """One drain of ``tasks`` no-ops of ``mode`` across two worker processes."""
    return await drain_on(f"{url}?schema=drain_{mode}_{directory.name}", directory, mode, tasks)


async def round_trips(
    url: str, directory: Path, calls: int, rate: float, seconds: float
) -> dict[str, float]:
    """Sequential round trips, then an open loop, on one worker process."""
    return await round_trips_on(f"{url}?schema=calls", directory, calls, rate, seconds)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--server",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a server URL; the benchmark creates and drops a database of its own there",
    )
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per drain")
    parser.add_argument("--runs", type=int, default=3, help="drains per delivery mode")
    parser.add_argument("--calls", type=int, default=300, help="sequential round trips")
    parser.add_argument("--rate", type=float, default=100.0, help="open-loop calls per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="open-loop duration")
    parser.add_argument(
        "--synchronous-commit", choices=("on", "off"), help="the database's synchronous_commit"
    )
    args = parser.parse_args(argv)
    name = f"chicory_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(args.server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        if args.synchronous_commit:
            conn.execute(
                sql.SQL("ALTER DATABASE {} SET synchronous_commit = {}").format(
                    sql.Identifier(name), sql.SQL(args.synchronous_commit)
                )
            )
        version = conn.execute("SHOW server_version").fetchone()
    url = _database_url(args.server, name)
    load_before = os.getloadavg()
    results: dict[str, list[float]] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="chicory-postgres-bench-") as tmp:
            for run in range(args.runs):
                for mode in ("alo", "amo"):
                    directory = Path(tmp) / f"run{run}_{mode}"
                    directory.mkdir()
                    for key, value in (await drain(url, directory, mode, args.tasks)).items():
                        results.setdefault(f"{mode}_{key}", []).append(value)
            directory = Path(tmp) / "calls"
            directory.mkdir()
            calls = await round_trips(url, directory, args.calls, args.rate, args.seconds)
    finally:
        with psycopg.connect(args.server, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    load_after = os.getloadavg()
    print(
        f"PostgreSQL {version[0] if version else '?'} (synchronous_commit "
        f"{args.synchronous_commit or 'as the server says'}), Python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs; load average (1/5/15 min) "
        f"before {'/'.join(f'{v:.1f}' for v in load_before)}, after "
        f"{'/'.join(f'{v:.1f}' for v in load_after)}"
    )
    print_report(args, results, calls)


if __name__ == "__main__":
    anyio.run(main)
