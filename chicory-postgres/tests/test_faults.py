"""Fault injection on the PostgreSQL broker, with worker processes (``chicory worker``).

* SIGKILL of one of two workers in the middle of a batch: at-least-once loses nothing (the
  survivor takes over the dead worker's claims once their leases lapse), at-most-once runs
  nothing twice.
* A task three and a half leases long runs once while its worker lives (lease renewal).
* A restart of the database under a running worker: on a **private** server this test
  starts itself (its own data directory and port, run as the postgres user), never the
  shared one; the worker reconnects and every at-least-once task still completes.

Each test works in a schema of its own; task events go to a file, so the tests count exactly
what ran.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fault_scenarios import (
    N,
    kill_one_of_two_at_least_once,
    kill_one_of_two_at_most_once,
    long_task_runs_once,
    mid_batch,
    producer,
)
from psycopg import sql

from e2e_support import drained, eventually
from processes import run_counts, worker_process

pytestmark = pytest.mark.slow


@pytest.fixture
def queue_url(postgres_url: str) -> Iterator[str]:
    """The session's database, in a schema of this test's own with 1 s leases."""
    schema = f"chicory_f_{uuid.uuid4().hex[:8]}"
    yield f"{postgres_url}?schema={schema}&lease_seconds=1"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


async def test_sigkill_mid_batch_loses_no_at_least_once_task(
    queue_url: str, tmp_path: Path
) -> None:
    await kill_one_of_two_at_least_once(queue_url, tmp_path)


async def test_sigkill_mid_batch_runs_no_at_most_once_task_twice(
    queue_url: str, tmp_path: Path
) -> None:
    await kill_one_of_two_at_most_once(queue_url, tmp_path)


async def test_task_longer_than_the_lease_runs_once_while_its_worker_lives(
    queue_url: str, tmp_path: Path
) -> None:
    await long_task_runs_once(queue_url, tmp_path)


# -- a database restart, on a private server ---------------------------------------------------


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    if not found:
        pytest.fail("PostgreSQL's server binaries are missing: apt-get install postgresql")
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateServer:
    """A PostgreSQL server of this test's own: data directory, port, started as postgres."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.root = Path(tempfile.mkdtemp(prefix="chicory-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        shutil.chown(self.root, "postgres", "postgres")
        self._as_postgres("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres")

    def _as_postgres(self, tool: str, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(self.bin / tool), *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def _ctl(self, action: str, *extra: str) -> None:
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root}"
        log = str(self.root / "server.log")
        self._as_postgres(
            "pg_ctl", "-D", str(self.data), "-l", log, "-w", "-o", options, action, *extra
        )

    def start(self) -> None:
        self._ctl("start")

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def private_server() -> Iterator[PrivateServer]:
    """A private PostgreSQL server, stopped and deleted afterwards."""
    server = PrivateServer()
    server.start()
    try:
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(server.root, ignore_errors=True)


async def test_database_restart_under_a_running_worker(
    private_server: PrivateServer, tmp_path: Path
) -> None:
    runs = tmp_path / "runs.txt"
    url = f"{private_server.url}?lease_seconds=2"
    app = producer(url)
    results = await app.tasks["w.alo"].delay_many((i, 0.1) for i in range(N))
    await app.close()
    with worker_process(url, runs, "--concurrency", "10") as worker:
        await eventually(lambda: mid_batch(runs), timeout=60)
        private_server.restart()
        app = producer(url)
        assert [await r.get(timeout=120) for r in results] == list(range(N))
        broker = await app.connected_broker()

        # Acks that failed during the restart are sent again (or the messages come back
        # and are acked unrun, their results being stored): the queue ends empty.
        await eventually(lambda: drained(broker), timeout=60)
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    _, ended = run_counts(runs)
    assert set(ended) == set(range(N))  # nothing lost across the restart
    await app.close()
