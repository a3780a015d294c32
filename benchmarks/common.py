"""Shared pieces of the benchmark harness: settings, statistics, child processes, RSS.

Every child process is started in its own session and stopped by its pid (SIGTERM, then
SIGKILL to its process group after a timeout), also when a benchmark fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil  # type: ignore[import-untyped]

__all__ = [
    "BENCH_DIR",
    "PYTHON",
    "VENV_BIN",
    "Measurement",
    "RssSampler",
    "Settings",
    "Stat",
    "child_process",
    "drain_meters",
    "percentile",
    "redis_pid",
    "stop_process",
    "summarize",
    "tree_cpu",
]

BENCH_DIR = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
PYTHON = sys.executable


@dataclass(frozen=True)
class Settings:
    """What one harness run is configured with.

    Attributes:
        host: Redis host (loopback only).
        port: Redis port (default: ``$BENCH_REDIS_PORT``, else 6379; a private
            ``redis-server`` on another port keeps other users of 6379 out of the numbers).
        db: The dedicated database number; the harness flushes only this database.
        runs: Repetitions of each measurement (the report shows median and min-max).
        drain_tasks: No-op tasks per drain run.
        roundtrip_tasks: ``add`` tasks per round-trip run.
        latency_rate: Open-loop producer rate (tasks/s).
        latency_seconds: Open-loop producer duration (s).
        soak_tasks: Tasks of the RSS soak run.
        concurrency: Worker concurrency (Chicory, taskiq max async tasks, Dramatiq threads).
        prefetch: The Chicory worker's prefetch (deliveries held beyond the running ones):
            ``None`` means three times the concurrency, the setting ``docs/redis.md`` advises
            for many short tasks. The library's default (prefetch = concurrency) is measured
            too, in the worker settings table.
        batch: Messages per ``delay_many`` call and per floor pipeline.
    """

    host: str = "127.0.0.1"
    port: int = int(os.environ.get("BENCH_REDIS_PORT", "6379"))
    db: int = 13
    runs: int = 5
    drain_tasks: int = 10_000
    roundtrip_tasks: int = 2_000
    latency_rate: float = 200.0
    latency_seconds: float = 10.0
    soak_tasks: int = 1_000_000
    concurrency: int = 64
    prefetch: int | None = None
    batch: int = 1_000

    @property
    def worker_prefetch(self) -> int:
        """The prefetch the main Chicory worker runs with."""
        return 3 * self.concurrency if self.prefetch is None else self.prefetch

    @property
    def capacity(self) -> int:
        """Deliveries the main Chicory worker holds at most: concurrency + prefetch."""
        return self.concurrency + self.worker_prefetch

    @property
    def redis_url(self) -> str:
        """Plain URL of the dedicated database."""
        return f"redis://{self.host}:{self.port}/{self.db}"

    def chicory_url(self, prefix: str) -> str:
        """Chicory broker URL on the dedicated database with its own key prefix."""
        return f"{self.redis_url}?key_prefix={prefix}"


@dataclass(frozen=True)
class Stat:
    """Median and range of one measured quantity over several runs."""

    median: float
    low: float
    high: float
    values: tuple[float, ...]

    def ratio(self, other: Stat) -> float:
        """This median as a fraction of ``other``'s median."""
        return self.median / other.median if other.median else float("nan")


def summarize(values: Sequence[float]) -> Stat:
    """Median, min and max of ``values`` (which must not be empty)."""
    return Stat(statistics.median(values), min(values), max(values), tuple(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class Measurement:
    """Named numbers from one run of one benchmark (e.g. ``{"e2e": 12000.0}``)."""

    values: dict[str, float] = field(default_factory=dict)


async def in_child(
    module: str, function: str, settings: Settings, *args: object, python: str = PYTHON
) -> Measurement | dict[str, Measurement]:
    """Run ``module.function(settings, *args)`` in a fresh process (``child.py``), bounded.

    ``python`` is the interpreter of a virtual environment holding the workspace (this one's
    by default); the worker processes a benchmark starts come from that environment too.

    Raises:
        RuntimeError: the child failed or ran longer than 20 minutes (it is then killed).
    """
    argv = [
        python,
        "child.py",
        module,
        function,
        json.dumps(dataclasses.asdict(settings)),
        json.dumps([str(a) if isinstance(a, Path) else a for a in args]),
    ]
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=BENCH_DIR, stdout=asyncio.subprocess.PIPE, start_new_session=True
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=1200)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark {module}.{function} failed (exit {proc.returncode})")
    result = json.loads(out.decode().strip().splitlines()[-1])
    if "values" in result:
        return Measurement(result["values"])
    return {name: Measurement(values) for name, values in result["named"].items()}


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """Stop a child started by :func:`child_process`: SIGTERM, then SIGKILL its group."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    # The child leads its own session: anything it forked is in the group of its pid.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


@contextlib.contextmanager
def child_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
    stop_timeout: float = 15.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` from ``benchmarks/`` in its own session; always stop it on exit.

    Args:
        argv: The command.
        env: Variables added to this process's environment.
        log: File that receives the child's stdout and stderr (default: discarded).
        stop_timeout: Seconds between SIGTERM and SIGKILL of the child's process group.
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(BENCH_DIR), full_env.get("PYTHONPATH", "")) if p
    )
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            list(argv),
            cwd=BENCH_DIR,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            stop_process(proc, stop_timeout)
    finally:
        if log is not None and not isinstance(out, int):
            out.close()


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its live children."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def drain_meters(worker_pid: int, redis_pid: int | None) -> dict[str, Callable[[], float]]:
    """CPU meters of a drain: the worker process tree, this process, and Redis if visible."""
    meters: dict[str, Callable[[], float]] = {
        "cpu_us": lambda: tree_cpu(worker_pid),
        "producer_cpu_us": time.process_time,
    }
    if redis_pid is not None:
        meters["redis_cpu_us"] = lambda: tree_cpu(redis_pid)
    return meters


def redis_pid(url: str) -> int | None:
    """The pid of the Redis server at ``url`` if it runs here and psutil may read it."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        pid = int(client.info("server")["process_id"])
        psutil.Process(pid).cpu_times()
    except (psutil.Error, redis.RedisError, KeyError, ValueError):
        return None
    finally:
        client.close()
    return pid


class RssSampler:
    """Samples a process's RSS in a background thread; keeps the peak.

    Args:
        pid: The process to watch.
        interval: Seconds between samples.
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self._proc = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.peak = 0

    def current(self) -> int:
        """RSS in bytes right now."""
        return int(self._proc.memory_info().rss)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.current())
            except psutil.Error:
                return
            self._stop.wait(self._interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
