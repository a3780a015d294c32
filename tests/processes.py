"""Processes tests start and always stop themselves: a private redis-server, subprocess workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

TESTS = Path(__file__).resolve().parent


def free_port() -> int:
    """Return a loopback TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server of the test's own, on another loopback port, with persistence on.

    Args:
        directory: Where it keeps its append-only file.
        args: Extra ``redis-server`` arguments (``"--requirepass", "..."``).
    """

    def __init__(self, directory: Path, *args: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.args = args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its URL, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers."""
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--daemonize",
                "no",
                "--logfile",
                str(self.directory / "redis.log"),
                *self.args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = self.admin(socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    client.close()
                    return
            except redis.RedisError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def admin(self, **options: Any) -> redis.Redis:
        """A synchronous client of its own (with the password, if it has one)."""
        password = None
        if "--requirepass" in self.args:
            password = self.args[self.args.index("--requirepass") + 1]
        return redis.Redis(port=self.port, password=password, **options)

    def pause(self) -> None:
        """Freeze it (SIGSTOP): connections stay open, nothing is answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Let a frozen server run again (SIGCONT)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill_clients(self) -> None:
        """Close every client connection from the server side (``CLIENT KILL``)."""
        admin = self.admin(socket_timeout=5)
        try:
            admin.execute_command("CLIENT", "KILL", "TYPE", "normal")
            admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        finally:
            admin.close()

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and wait for it to exit."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a paused server cannot exit
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


@contextmanager
def own_redis(directory: Path, *args: str) -> Iterator[RedisServer]:
    """Run a private redis-server for the block; it is stopped by pid afterwards."""
    server = RedisServer(directory, *args)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class WorkerProcess:
    """``chicory worker worker_app:app`` (or another app of ``tests/``) in a subprocess.

    Args:
        broker_url: Its broker URL.
        runs_file: Where the test app records task events.
        args: Extra ``chicory worker`` arguments.
        app: The app to run, ``module:attribute`` importable from ``directory``.
        directory: Its working directory and ``PYTHONPATH`` (default: ``tests/``).
        env: Further environment variables.
    """

    def __init__(
        self,
        broker_url: str,
        runs_file: Path,
        *args: str,
        app: str = "worker_app:app",
        directory: Path = TESTS,
        env: Mapping[str, str] | None = None,
    ) -> None:
        full_env = {
            **os.environ,
            "CHICORY_BROKER_URL": broker_url,
            "CHICORY_TEST_RUNS": str(runs_file),
            "PYTHONPATH": str(directory),
            **(env or {}),
        }
        full_env.pop("CHICORY_BACKEND_URL", None)
        self.log = runs_file.with_suffix(f".worker{free_port()}.log")
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "chicory.cli", "worker", app, *args],
            cwd=directory,
            env=full_env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the worker."""
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """Wait for the worker to exit; return its exit code."""
        return self.process.wait(timeout)

    def output(self) -> str:
        """What the worker has logged so far."""
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        """Make sure the worker is gone (SIGKILL if it is still running)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self._log_file.close()


@contextmanager
def worker_process(
    broker_url: str, runs_file: Path, *args: str, **options: Any
) -> Iterator[WorkerProcess]:
    """Run a subprocess worker for the block; it is killed by pid afterwards if still alive.

    ``options`` are :class:`WorkerProcess`'s keyword arguments.
    """
    worker = WorkerProcess(broker_url, runs_file, *args, **options)
    try:
        yield worker
    finally:
        worker.stop()


def run_counts(runs_file: Path) -> tuple[Counter[int], Counter[int]]:
    """Return how often each task number started and ended, from the runs file."""
    started: Counter[int] = Counter()
    ended: Counter[int] = Counter()
    if runs_file.exists():
        for line in runs_file.read_text().splitlines():
            event, _, number = line.partition(" ")
            (started if event == "start" else ended)[int(number)] += 1
    return started, ended


def delete_keys(prefix: str, port: int = 6379, db: int = 0) -> None:
    """Delete every key under ``prefix`` (a test's own key prefix) from a Redis."""
    client = redis.Redis(port=port, db=db)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def child_pids(supervisor: int) -> set[int]:
    """The pids of the live children of process ``supervisor`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == supervisor:
                found.add(int(entry.name))
    return found


def wait_for_child(pid: int, timeout: float) -> int:
    """The exit code of child ``pid``; it is killed if it runs longer than ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"the forked child did not finish within {timeout} s")
