"""pgqueuer on PostgreSQL, drained like Chicory's PostgreSQL broker (``pg_drain.drain``).

* **Schema**: ``pgq install`` (the default ``durable`` level: logged tables, as Chicory's),
  then ``pgq autovac``, the autovacuum settings pgqueuer's performance guide asks for.
* **Workers**: ``pgqueuer.run`` (``pgq run`` without the CLI, see ``peers/pgqueuer_app.py``)
  with ``batch_size=64, max_concurrent_tasks=256``, each on one asyncpg connection (the
  guide's advice for a worker) and uvloop (what ``pgq run`` uses when installed). The
  guide says to raise ``batch_size`` (default 10) for short jobs; 256 jobs held per
  process is what a Chicory worker holds (concurrency 64 + prefetch 192).
* **Enqueue**: ``Queries.enqueue`` with lists, pgqueuer's batch insert, 1,000 jobs a call,
  on an asyncpg connection.
* **Delivery**: at least once. A worker marks the jobs it dequeues ``picked`` and sends
  heartbeats while they run; finished jobs leave the queue table for ``pgqueuer_log`` in
  buffered batches. Jobs of a worker that dies stay ``picked`` until their heartbeat is
  older than ``heartbeat_timeout`` (30 s), then another worker picks them again.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
from common import PYTHON, VENV_BIN
from pg_drain import run_tool
from pgqueuer.db import AsyncpgDriver
from pgqueuer.queries import Queries

from peers.exit_report import DONE_ENV
from peers.pgqueuer_app import APPLICATION_NAME, ENTRYPOINT

__all__ = ["BATCH_SIZE", "MAX_CONCURRENT_TASKS", "PgqueuerTarget"]

BATCH_SIZE = 64
MAX_CONCURRENT_TASKS = 256


class _Producer:
    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self._queries = Queries(AsyncpgDriver(connection))

    async def enqueue(self, count: int) -> None:
        await self._queries.enqueue([ENTRYPOINT] * count, [None] * count, [0] * count)

    async def remaining(self) -> int:
        return int(await self._connection.fetchval("SELECT count(*) FROM pgqueuer"))

    async def consumers(self) -> int:
        return int(
            await self._connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = $1",
                APPLICATION_NAME,
            )
        )


class PgqueuerTarget:
    """pgqueuer as a ``pg_drain.Target``."""

    name = "pgqueuer"

    def install(self, url: str) -> None:
        """``pgq install`` and ``pgq autovac`` on ``url``."""
        for command in ("install", "autovac"):
            run_tool([str(VENV_BIN / "pgq"), "--pg-dsn", url, command])

    def worker(self, url: str, done: Path) -> tuple[list[str], dict[str, str]]:
        """A pgqueuer worker (``peers.pgqueuer_app``) on ``url`` with the settings above."""
        argv = [PYTHON, "-m", "peers.pgqueuer_app"]
        argv += ["--batch-size", str(BATCH_SIZE)]
        argv += ["--max-concurrent-tasks", str(MAX_CONCURRENT_TASKS)]
        return argv, {"BENCH_PEER_URL": url, DONE_ENV: str(done)}

    @contextlib.asynccontextmanager
    async def producer(self, url: str) -> AsyncIterator[_Producer]:
        """A producer on one asyncpg connection to ``url``."""
        connection = await asyncpg.connect(url)
        try:
            yield _Producer(connection)
        finally:
            await connection.close()
