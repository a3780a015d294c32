"""One drain on PostgreSQL, measured the same way for Chicory and for each peer.

A *target* (Chicory, pgqueuer, procrastinate) says how to install its schema in a fresh
database, which command runs one of its worker processes, and how its producer enqueues a
batch, counts the tasks not yet finished and counts the workers that are ready.
:func:`drain` then does what ``sqlite.drain_on`` does for Chicory alone:

1. start two worker processes and wait until both are ready;
2. enqueue ``tasks`` no-op tasks in batches of 1,000 (*enqueue*: tasks / time of the
   enqueue calls);
3. poll every 50 ms until no task is left queued or running;
4. stop the workers (SIGTERM: each finishes what it holds and exits); each writes
   ``<count> <last end>`` at exit (:mod:`peers.exit_report`), so *end to end* is tasks /
   (first enqueue -> the last task's end) without a per-task measurement write;
5. CPU per task, from just before the first enqueue to the drained queue: the two worker
   processes (with any children), the producer process, and the PostgreSQL backends
   serving the benchmark's database (when this user may read their ``/proc`` entries).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import anyio
import psutil  # type: ignore[import-untyped]
import psycopg
from common import BENCH_DIR, child_process, tree_cpu
from psycopg import sql

__all__ = [
    "BATCH",
    "WORKERS",
    "BackendCpu",
    "Producer",
    "Target",
    "database_url",
    "drain",
    "fresh_database",
    "run_tool",
]

BATCH = 1_000
"""Tasks per enqueue call (a batch insert where the system has one)."""

WORKERS = 2
"""Worker processes per drain."""

DRAIN_TIMEOUT = 600.0
"""Seconds a drain may take at most once enqueued."""


class Producer(Protocol):
    """The producer side of a target, connected to its database."""

    async def enqueue(self, count: int) -> None:
        """Enqueue ``count`` no-op tasks (one batch)."""

    async def remaining(self) -> int:
        """Tasks enqueued and not yet finished (queued or running)."""

    async def consumers(self) -> int:
        """Worker processes ready to take tasks."""


class Target(Protocol):
    """A task queue measured by :func:`drain`."""

    name: str
    """The row label in the results table."""

    def install(self, url: str) -> None:
        """Install the system's schema into the empty database at ``url``, with its tooling."""

    def worker(self, url: str, done: Path) -> tuple[list[str], dict[str, str]]:
        """The command and extra environment of one worker process on ``url`` that
        reports at exit to ``<done>.<pid>``."""

    def producer(self, url: str) -> AbstractAsyncContextManager[Producer]:
        """The producer, connected to ``url`` for the duration of the context."""


def run_tool(argv: Sequence[str], env: Mapping[str, str] | None = None) -> None:
    """Run a system's command-line tool (a schema install) from ``benchmarks/``, quietly.

    Raises:
        RuntimeError: the tool failed; the message holds its output.
    """
    full_env = {**os.environ, "PYTHONPATH": str(BENCH_DIR), **(env or {})}
    done = subprocess.run(
        list(argv), cwd=BENCH_DIR, env=full_env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} ... failed (exit {done.returncode}):\n"
            f"{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )


def database_url(server: str, name: str) -> str:
    """``server``'s URL with its database replaced by ``name``."""
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


@contextlib.contextmanager
def fresh_database(server: str, prefix: str = "chicory_bench") -> Iterator[str]:
    """Create a database of its own on ``server``; yield its URL; drop it afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield database_url(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


class BackendCpu:
    """CPU seconds used by the PostgreSQL backends serving one database, so far.

    Each call lists the database's backends (``pg_stat_activity``, this meter's own
    connection left out) and remembers the last CPU time read for each, so a backend whose
    connection closed keeps what it used until the last call that saw it. A backend first
    seen at a later call counts in full: it was started in between. ``None`` when the
    backends are not processes of this machine that this user may read (a server elsewhere,
    or run by another user without the privileges to read its ``/proc`` entries).
    """

    def __init__(self, url: str) -> None:
        host = urlsplit(url).hostname or ""
        self._local = host in ("", "localhost", "127.0.0.1", "::1") or host.startswith("/")
        self._conn = psycopg.connect(url, autocommit=True)
        self._seen: dict[int, float] = {}

    def __call__(self) -> float | None:
        if not self._local:
            return None
        rows = self._conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
        for (pid,) in rows:
            try:
                process = psutil.Process(pid)
                if not process.name().startswith("postgres"):
                    return None  # not the server's process: another server has this pid
                times = process.cpu_times()
            except psutil.AccessDenied:
                return None
            except psutil.NoSuchProcess:
                continue  # its connection closed in between
            self._seen[pid] = times.user + times.system
        return sum(self._seen.values())

    def close(self) -> None:
        """Close the meter's connection."""
        self._conn.close()


def _reports(done: Path) -> list[tuple[int, float]]:
    """The ``<count> <last end>`` lines the worker processes wrote at exit."""
    out = []
    for path in done.parent.glob(f"{done.name}.*"):
        count, last = path.read_text().split()
        out.append((int(count), float(last)))
    return out


@contextlib.contextmanager
def _workers(
    argv: Sequence[str], env: Mapping[str, str], directory: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Run :data:`WORKERS` worker processes; stop them all (by pid) on exit."""
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(
                child_process(argv, env=env, log=directory / f"worker{n}.log", stop_timeout=60)
            )
            for n in range(WORKERS)
        ]


def _check_alive(procs: Sequence[subprocess.Popen[bytes]], directory: Path) -> None:
    if any(proc.poll() is not None for proc in procs):
        raise RuntimeError(f"a worker process exited early; see {directory}/worker*.log")


async def _wait_ready(
    producer: Producer, procs: Sequence[subprocess.Popen[bytes]], directory: Path
) -> None:
    with anyio.fail_after(60):
        while await producer.consumers() < WORKERS:
            _check_alive(procs, directory)
            await anyio.sleep(0.1)


async def drain(target: Target, url: str, directory: Path, tasks: int) -> dict[str, float]:
    """One drain of ``tasks`` no-ops of ``target`` on the fresh database ``url``.

    Returns ``enqueue`` and ``end_to_end`` (tasks/s), ``cpu_us`` (both worker processes),
    ``producer_cpu_us`` and, when readable, ``server_cpu_us`` (CPU microseconds per task).

    Raises:
        RuntimeError: a worker process exited early, or the workers ran another number of
            tasks than were enqueued.
        TimeoutError: the workers were not ready within 60 s, or the drain took longer
            than :data:`DRAIN_TIMEOUT`.
    """
    target.install(url)
    done = directory / "done"
    argv, env = target.worker(url, done)
    backends = BackendCpu(url)
    try:
        async with target.producer(url) as producer:
            with _workers(argv, env, directory) as procs:
                await _wait_ready(producer, procs, directory)
                server_before = backends()
                workers_before = sum(tree_cpu(proc.pid) for proc in procs)
                producer_before = time.process_time()
                start = time.time()
                for offset in range(0, tasks, BATCH):
                    await producer.enqueue(min(BATCH, tasks - offset))
                enqueued = time.time()
                with anyio.fail_after(DRAIN_TIMEOUT):
                    while await producer.remaining():
                        _check_alive(procs, directory)
                        await anyio.sleep(0.05)
                workers_cpu = sum(tree_cpu(proc.pid) for proc in procs) - workers_before
                producer_cpu = time.process_time() - producer_before
                server_after = backends()
                _check_alive(procs, directory)
    finally:
        backends.close()
    reports = _reports(done)
    ran = sum(count for count, _ in reports)
    if ran != tasks:
        raise RuntimeError(f"{target.name}: {ran} tasks ran, {tasks} were enqueued")
    end = max(last for _, last in reports)
    out = {
        "enqueue": tasks / (enqueued - start),
        "end_to_end": tasks / (end - start),
        "cpu_us": workers_cpu / tasks * 1e6,
        "producer_cpu_us": producer_cpu / tasks * 1e6,
    }
    if server_before is not None and server_after is not None:
        out["server_cpu_us"] = (server_after - server_before) / tasks * 1e6
    return out
