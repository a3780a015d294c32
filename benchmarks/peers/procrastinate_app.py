"""The procrastinate app of the PostgreSQL peer benchmark: one no-op task.

The worker process is ``procrastinate --app peers.procrastinate_app.app worker`` (run from
``benchmarks/``); the app reads the database from ``$BENCH_PEER_URL`` and reports at exit as
:mod:`peers.exit_report` says.
"""

from __future__ import annotations

import os

import procrastinate

from peers.exit_report import done

__all__ = ["TASK", "app", "noop"]

TASK = "bench_noop"

app = procrastinate.App(
    connector=procrastinate.PsycopgConnector(
        conninfo=os.environ.get("BENCH_PEER_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
)


@app.task(name=TASK)
async def noop() -> None:
    """Count one finished task."""
    done()
