"""The pgqueuer app of the PostgreSQL peer benchmark: one no-op entrypoint.

The worker process is ``python -m peers.pgqueuer_app --batch-size N --max-concurrent-tasks
N`` (run from ``benchmarks/``): ``pgqueuer.run``, which its documentation gives as the same
worker as ``pgq run`` without the CLI, on uvloop as ``pgq run`` does. (pgqueuer 1.6.0's
``pgq run`` fails at start-up with Typer 0.29: its ``--log-level`` value reaches the logging
set-up as a string.) The app reads the database from ``$BENCH_PEER_URL`` and reports at exit
as :mod:`peers.exit_report` says. Its connection carries the application name
:data:`APPLICATION_NAME`, by which the harness counts the workers that are up.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg  # type: ignore[import-untyped]
import pgqueuer
import uvloop
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job

from peers.exit_report import done

__all__ = ["APPLICATION_NAME", "ENTRYPOINT", "main"]

APPLICATION_NAME = "pgqueuer-bench-worker"
ENTRYPOINT = "bench_noop"


@contextlib.asynccontextmanager
async def main() -> AsyncIterator[PgQueuer]:
    """The worker's factory: one asyncpg connection (pgqueuer's advice for a worker: a
    dedicated connection, not a pool) and the no-op entrypoint."""
    connection = await asyncpg.connect(
        os.environ["BENCH_PEER_URL"], server_settings={"application_name": APPLICATION_NAME}
    )
    try:
        pgq = PgQueuer(AsyncpgDriver(connection))

        @pgq.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            done()

        yield pgq
    finally:
        await connection.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a pgqueuer worker of the benchmark")
    parser.add_argument("--batch-size", type=int, required=True, help="jobs per dequeue")
    parser.add_argument("--max-concurrent-tasks", type=int, required=True, help="jobs held at most")
    parser.add_argument(
        "--heartbeat-timeout", type=float, default=30.0, help="seconds before a re-pick"
    )
    args = parser.parse_args()
    uvloop.run(
        pgqueuer.run(
            main,
            batch_size=args.batch_size,
            max_concurrent_tasks=args.max_concurrent_tasks,
            heartbeat_timeout=timedelta(seconds=args.heartbeat_timeout),
        )
    )
