"""procrastinate on PostgreSQL, drained like Chicory's PostgreSQL broker (``pg_drain.drain``).

* **Schema**: ``procrastinate schema --apply``.
* **Workers**: ``procrastinate --app peers.procrastinate_app.app --log-level warning worker
  --concurrency 64 --delete-jobs successful``: 64 jobs at a time per process (a Chicory worker's
  concurrency; procrastinate has no prefetch: each free slot fetches one job with one
  query), woken by LISTEN/NOTIFY (its default), finished jobs deleted on completion (the
  documented way to keep the jobs table small), and warnings only in the log (at the
  CLI's default level it writes two lines per job).
* **Enqueue**: ``Task.batch_defer_async``, procrastinate's batch insert, 1,000 jobs a call,
  on the app's psycopg pool.
* **Delivery**: a fetched job is ``doing`` until the worker records its end. A worker
  stopped gracefully finishes its jobs first; one that dies leaves its jobs ``doing``
  ("stalled"), and they never run again unless the application retries them itself
  (procrastinate's documented recipe: a periodic task that calls
  ``JobManager.get_stalled_jobs`` and ``retry_job``, which this benchmark does not need).
  Without it: at most once on a crash; with it, at least once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import procrastinate
import psycopg
from common import VENV_BIN
from pg_drain import run_tool

from peers.exit_report import DONE_ENV
from peers.procrastinate_app import TASK, app

__all__ = ["CONCURRENCY", "ProcrastinateTarget"]

CONCURRENCY = 64
_COMMAND = (
    str(VENV_BIN / "procrastinate"),
    "--app",
    "peers.procrastinate_app.app",
    "--log-level",
    "warning",
)


class _Producer:
    def __init__(self, app: procrastinate.App, connection: psycopg.AsyncConnection) -> None:
        self._task = app.tasks[TASK]
        self._connection = connection

    async def enqueue(self, count: int) -> None:
        await self._task.batch_defer_async(*([{}] * count))

    async def _count(self, query: str) -> int:
        row = await (await self._connection.execute(query)).fetchone()
        return int(row[0]) if row else 0

    async def remaining(self) -> int:
        return await self._count(
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"
        )

    async def consumers(self) -> int:
        return await self._count("SELECT count(*) FROM procrastinate_workers")


class ProcrastinateTarget:
    """procrastinate as a ``pg_drain.Target``."""

    name = "procrastinate"

    def install(self, url: str) -> None:
        """``procrastinate schema --apply`` on ``url``."""
        run_tool([*_COMMAND, "schema", "--apply"], {"BENCH_PEER_URL": url})

    def worker(self, url: str, done: Path) -> tuple[list[str], dict[str, str]]:
        """``procrastinate worker`` on ``url`` with the settings above."""
        argv = [*_COMMAND, "worker", "--concurrency", str(CONCURRENCY)]
        argv += ["--delete-jobs", "successful"]
        return argv, {"BENCH_PEER_URL": url, DONE_ENV: str(done)}

    @contextlib.asynccontextmanager
    async def producer(self, url: str) -> AsyncIterator[_Producer]:
        """The app, connected to ``url``, and a connection to count jobs and workers."""
        with app.replace_connector(procrastinate.PsycopgConnector(conninfo=url)) as connected:
            async with (
                connected.open_async(),
                await psycopg.AsyncConnection.connect(url, autocommit=True) as connection,
            ):
                yield _Producer(connected, connection)
