"""The fault harness: real worker processes on a private Redis, faults injected under load.

One *run* is one scenario in one delivery mode:

1. a ``redis-server`` of the run's own (another loopback port, its own directory, AOF with
   ``appendfsync always``), stopped by pid at the end;
2. ``workers`` ``chicory worker fault_app:app`` processes sharing the queue, and a backlog
   of ``backlog`` tasks of varied length (1-40 ms, every 97th one 400 ms);
3. a producer in this process publishing ``produce_rate`` tasks a second, one ``delay()``
   each, before, during and after the faults;
4. after ``warmup`` seconds the scenario's fault, ``repeats`` times ``spacing`` seconds
   apart (a hung Redis once), then ``settle`` seconds of normal running;
5. the producer stops, the queue drains (up to ``drain_timeout``), the workers get SIGTERM.

Each task appends ``s <n> <time>`` / ``e <n> <time>`` lines to a file shared by the
workers (:mod:`fault_app`), so every run of every task is counted across processes, killed
ones included. A run reports:

* ``published``: tasks whose publish was confirmed (the backlog and the producer's);
  ``unknown``: publishes that failed with an outcome Chicory could not know
  (:class:`~chicory.errors.PublishOutcomeUnknownError`); ``refused``: publishes Chicory
  reported as certainly not made (the producer retried them);
* ``lost``: confirmed tasks that never finished; ``run_twice``: tasks that started more than
  once; ``max_runs``: the most starts of one task; ``stuck``: messages still in the queue
  (ready, in flight or delayed) when the drain gave up; ``crashed``: workers that exited
  without being told to, or with a non-zero code after SIGTERM;
* ``recovery``: per fault, seconds from the end of the fault (Redis answering again, the
  clients killed, the worker signalled) to the start of the first one-second window whose
  throughput is at least :data:`FULL_FRACTION` of the rate before the first fault.

:func:`verdict` checks a run against the targets: at-least-once loses nothing, at-most-once
runs nothing twice, nothing is stuck, no worker crashes, at-least-once duplicates stay
within what the faulted workers held, and after a Redis fault throughput is back within
:data:`RECOVERY_TARGET` seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio

from chicory import Chicory, DeliveryMode
from chicory.errors import BrokerConnectionError, PublishOutcomeUnknownError
from processes import RedisServer

__all__ = [
    "BOUNDED",
    "FULL",
    "MODES",
    "SCENARIOS",
    "Profile",
    "RunResult",
    "run_scenario",
    "verdict",
]

HERE = Path(__file__).resolve().parent

SCENARIOS = ("worker-sigkill", "worker-sigterm", "redis-restart", "client-kill", "redis-hang")
"""Every fault the harness injects."""

REDIS_FAULTS = frozenset({"redis-restart", "client-kill", "redis-hang"})

MODES = {"alo": DeliveryMode.AT_LEAST_ONCE, "amo": DeliveryMode.AT_MOST_ONCE}
"""The delivery modes, by the short names the harness reports them under."""

FULL_FRACTION = 0.75
"""Throughput counts as full again at this fraction of the rate before the first fault."""

RECOVERY_TARGET = 2.0
"""Seconds after a Redis fault ends within which throughput must be full again."""


@dataclass(frozen=True)
class Profile:
    """How big and how long one run is.

    Attributes:
        workers: Worker processes sharing the queue.
        concurrency: Each worker's ``--concurrency`` (its prefetch is the same).
        backlog: Tasks enqueued before the faults.
        produce_rate: Tasks a second the producer publishes one by one during the run.
        lease_seconds: The broker's lease time in the Redis fault scenarios: long, so that
            anything waiting for a lease after a Redis fault shows (as slow recovery, or as
            work still stuck when the drain gives up).
        kill_lease_seconds: The lease time when workers are killed: the killed worker's
            at-least-once work comes back after it.
        warmup: Seconds of normal running before the first fault.
        repeats: How many times the fault is injected (a hung Redis: once).
        spacing: Seconds between repeated faults.
        downtime: Seconds Redis stays down in a restart.
        hang: Seconds Redis stays stopped (SIGSTOP) in a hang.
        settle: Seconds of normal running after the last fault, before producing stops.
        drain_timeout: Longest wait for the queue to drain at the end.
    """

    workers: int = 3
    concurrency: int = 8
    backlog: int = 40_000
    produce_rate: float = 100.0
    lease_seconds: float = 30.0
    kill_lease_seconds: float = 5.0
    warmup: float = 4.0
    repeats: int = 3
    spacing: float = 3.0
    downtime: float = 2.0
    hang: float = 13.0
    settle: float = 8.0
    drain_timeout: float = 90.0


FULL = Profile()
"""The full run's profile (``./scripts/faults``)."""

BOUNDED = Profile(
    workers=2,
    backlog=2_500,
    produce_rate=50.0,
    warmup=2.5,
    repeats=2,
    spacing=2.0,
    downtime=1.0,
    hang=3.0,
    settle=3.0,
    lease_seconds=60.0,
    drain_timeout=40.0,
)
"""The bounded profile the test suite runs."""


@dataclass
class RunResult:
    """What one run measured; see the module docstring for each field."""

    scenario: str
    mode: str
    published: int = 0
    unknown: int = 0
    unknown_ran: int = 0
    refused: int = 0
    lost: int = 0
    run_twice: int = 0
    max_runs: int = 0
    stuck: int = 0
    crashed: int = 0
    duplicate_bound: int = 0
    baseline_rate: float = 0.0
    recovery: list[float] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready data."""
        return asdict(self)


def task_ms(n: int) -> int:
    """The length of task ``n`` in milliseconds: varied, and now and then a long one."""
    return 400 if n % 97 == 0 else (n * 7919) % 40 + 1


class RunsLog:
    """Reads the shared runs file incrementally: starts and ends per task, end times."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.started: Counter[int] = Counter()
        self.ended: Counter[int] = Counter()
        self.end_times: list[float] = []
        self._offset = 0
        self._partial = b""

    def read(self) -> None:
        """Take in what was appended since the last read."""
        if not self.path.exists():
            return
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        self._offset += len(data)
        data, _, self._partial = (self._partial + data).rpartition(b"\n")
        for line in data.split(b"\n"):
            if not line:
                continue
            kind, n, at = line.split()
            if kind == b"s":
                self.started[int(n)] += 1
            else:
                self.ended[int(n)] += 1
                self.end_times.append(float(at))

    def rate(self, start: float, end: float) -> float:
        """Tasks finished per second between two ``time.time()`` values."""
        count = sum(1 for t in self.end_times if start <= t < end)
        return count / (end - start) if end > start else 0.0


class Workers:
    """The run's worker processes, each in its own session, stopped by pid."""

    def __init__(self, url: str, runs: Path, directory: Path, concurrency: int) -> None:
        self._env = {
            **os.environ,
            "CHICORY_BROKER_URL": url,
            "CHICORY_FAULT_RUNS": str(runs),
            "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        }
        self._env.pop("CHICORY_BACKEND_URL", None)
        self._dir = directory
        self._concurrency = concurrency
        self.live: list[subprocess.Popen[bytes]] = []
        self.signalled: list[tuple[subprocess.Popen[bytes], int]] = []
        self._count = 0

    def start(self) -> subprocess.Popen[bytes]:
        """Start one more worker; its output goes to ``worker<k>.log`` in the run directory."""
        self._count += 1
        log = (self._dir / f"worker{self._count}.log").open("wb")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chicory.cli",
                "worker",
                "fault_app:app",
                "--concurrency",
                str(self._concurrency),
            ],
            cwd=HERE,
            env=self._env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.live.append(process)
        return process

    def signal_one(self, signum: int) -> None:
        """Send ``signum`` to the oldest live worker and stop counting it as live."""
        process = self.live.pop(0)
        process.send_signal(signum)
        self.signalled.append((process, signum))

    def crashed(self) -> int:
        """Live workers that exited on their own so far."""
        return sum(1 for p in self.live if p.poll() is not None)

    def stop_all(self, timeout: float) -> int:
        """SIGTERM every live worker; return how many crashed or exited non-zero."""
        bad = self.crashed()
        for process in self.live:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process, signum in [*((p, signal.SIGTERM) for p in self.live), *self.signalled]:
            try:
                code = process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
                bad += 1
                continue
            if signum == signal.SIGTERM and code != 0:
                bad += 1
        return bad

    def kill_all(self) -> None:
        """SIGKILL whatever is still running (clean-up after a failure)."""
        for process in [*self.live, *(p for p, _ in self.signalled)]:
            if process.poll() is None:
                process.kill()
                process.wait(10)


class Producer:
    """Publishes tasks one ``delay()`` at a time, counting what each publish became."""

    def __init__(self, app: Chicory, task_name: str, first: int) -> None:
        self._task = app.tasks[task_name]
        self.next = first
        self.confirmed: set[int] = set()
        self.unknown: set[int] = set()
        self.refused = 0
        self.errors: Counter[str] = Counter()

    async def run(self, rate: float, stop: anyio.Event) -> None:
        """Publish ``rate`` tasks a second until ``stop`` is set."""
        interval = 1.0 / rate
        due = time.monotonic()
        while not stop.is_set():
            n = self.next
            try:
                await self._task.delay(n, task_ms(n))
            except PublishOutcomeUnknownError:
                self.unknown.add(n)
                self.next += 1
                await anyio.sleep(0.05)
            except BrokerConnectionError as exc:
                self.refused += 1  # certainly not published: the same task goes again
                self.errors[type(exc).__name__] += 1
                await anyio.sleep(0.05)
                continue
            else:
                self.confirmed.add(n)
                self.next += 1
            due = max(due + interval, time.monotonic() - 1.0)
            await anyio.sleep(max(0.0, due - time.monotonic()))


async def _in_thread(fn: Callable[[], Any]) -> Any:
    return await anyio.to_thread.run_sync(fn)


async def _inject(
    scenario: str, profile: Profile, server: RedisServer, workers: Workers
) -> list[float]:
    """Inject the scenario's faults; return, per fault, when it ended (``time.time()``)."""
    ends: list[float] = []
    repeats = 1 if scenario == "redis-hang" else profile.repeats
    for i in range(repeats):
        if i:
            await anyio.sleep(profile.spacing)
        if scenario == "worker-sigkill":
            workers.signal_one(signal.SIGKILL)
            workers.start()
        elif scenario == "worker-sigterm":
            workers.signal_one(signal.SIGTERM)
            workers.start()
        elif scenario == "redis-restart":
            await _in_thread(server.stop)
            await anyio.sleep(profile.downtime)
            await _in_thread(server.start)
        elif scenario == "client-kill":
            await _in_thread(server.kill_clients)
        elif scenario == "redis-hang":
            server.pause()
            await anyio.sleep(profile.hang)
            server.resume()
        else:
            raise ValueError(f"unknown scenario {scenario!r}; choose from {SCENARIOS}")
        ends.append(time.time())
    return ends


def _recovery(log: RunsLog, baseline: float, end: float) -> float:
    """Seconds from ``end`` to the first one-second window at full throughput."""
    want = FULL_FRACTION * baseline
    t = end
    last = max(log.end_times, default=end)
    while t + 1.0 <= last:
        if log.rate(t, t + 1.0) >= want:
            return round(t - end, 1)
        t += 0.1
    return float("inf")


async def _drained(app: Chicory, queue: str) -> int:
    broker = await app.connected_broker()
    counts = await broker.counts(queue)
    return counts.ready + counts.in_flight + counts.delayed


async def run_scenario(
    scenario: str, mode: str, directory: Path, profile: Profile = FULL
) -> RunResult:
    """Run one scenario in one delivery mode (``"alo"`` or ``"amo"``) and measure it.

    Args:
        scenario: One of :data:`SCENARIOS`.
        mode: ``"alo"`` (at least once) or ``"amo"`` (at most once).
        directory: Where the run keeps its Redis data, worker logs and runs file.
        profile: Sizes and timings.
    """
    await _in_thread(lambda: directory.mkdir(parents=True, exist_ok=True))
    result = RunResult(scenario=scenario, mode=mode)
    began = time.monotonic()
    runs = directory / "runs.txt"
    server = RedisServer(directory)
    await _in_thread(server.start)
    lease = profile.lease_seconds if scenario in REDIS_FAULTS else profile.kill_lease_seconds
    url = f"{server.url}?lease_seconds={lease}&reclaim_interval=1"
    app = Chicory(url)
    task_name = f"f.{mode}"

    @app.task(name="f.alo", delivery_mode=DeliveryMode.AT_LEAST_ONCE)
    async def alo(n: int, ms: int) -> int: ...

    @app.task(name="f.amo", delivery_mode=DeliveryMode.AT_MOST_ONCE)
    async def amo(n: int, ms: int) -> int: ...

    workers = Workers(url, runs, directory, profile.concurrency)
    log = RunsLog(runs)
    producer = Producer(app, task_name, profile.backlog)
    try:
        for _ in range(profile.workers):
            workers.start()
        for start in range(0, profile.backlog, 1000):
            stop_at = min(profile.backlog, start + 1000)
            await app.tasks[task_name].delay_many((n, task_ms(n)) for n in range(start, stop_at))
        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(producer.run, profile.produce_rate, stop)
            with anyio.fail_after(60):  # the workers start up
                while len(log.ended) < 50:
                    await anyio.sleep(0.1)
                    log.read()
            await anyio.sleep(profile.warmup)
            first = time.time()
            ends = await _inject(scenario, profile, server, workers)
            await anyio.sleep(profile.settle)
            stop.set()
        log.read()
        result.baseline_rate = round(log.rate(first - 2.0, first), 1)
        result.recovery = [_recovery(log, result.baseline_rate, end) for end in ends]
        confirmed = set(range(profile.backlog)) | producer.confirmed
        with anyio.move_on_after(profile.drain_timeout):
            while True:
                log.read()
                if mode == "amo" or confirmed <= set(log.ended):
                    try:
                        if await _drained(app, "default") == 0:
                            break
                    except BrokerConnectionError:
                        pass
                await anyio.sleep(0.5)
        log.read()
        result.stuck = await _drained(app, "default")
        result.crashed = workers.stop_all(timeout=40)
        log.read()
        ended = set(log.ended)
        result.published = len(confirmed)
        result.unknown = len(producer.unknown)
        result.unknown_ran = len(producer.unknown & set(log.started))
        result.refused = producer.refused
        result.lost = len(confirmed - ended)
        result.run_twice = sum(1 for c in log.started.values() if c > 1)
        result.max_runs = max(log.started.values(), default=0)
        held = 2 * profile.concurrency  # concurrency + prefetch
        faulted = profile.workers if scenario in REDIS_FAULTS else 1
        repeats = 1 if scenario == "redis-hang" else profile.repeats
        result.duplicate_bound = repeats * faulted * held
        if producer.errors:
            result.notes.append(f"refused publishes: {dict(producer.errors)}")
    finally:
        workers.kill_all()
        await app.close()
        await _in_thread(server.stop)
    result.seconds = round(time.monotonic() - began, 1)
    return result


def verdict(result: RunResult, *, timing: bool = True) -> list[str]:
    """What ``result`` breaks of the harness's targets (empty: it meets them all).

    Args:
        result: One run's figures.
        timing: Also check the recovery time (the full run does; the test suite checks
            only what must never happen, whatever the machine's load).
    """
    broken: list[str] = []
    if result.mode == "alo" and result.lost:
        broken.append(f"at-least-once lost {result.lost} task(s)")
    if result.mode == "amo" and result.run_twice:
        broken.append(f"at-most-once ran {result.run_twice} task(s) more than once")
    if result.stuck:
        broken.append(f"{result.stuck} message(s) stuck in the queue")
    if result.crashed:
        broken.append(f"{result.crashed} worker(s) crashed or exited non-zero")
    if result.mode == "alo" and result.run_twice > result.duplicate_bound:
        broken.append(
            f"{result.run_twice} duplicates exceed what the faulted workers held "
            f"({result.duplicate_bound})"
        )
    if timing and result.scenario in REDIS_FAULTS:
        slow = [r for r in result.recovery if r > RECOVERY_TARGET]
        if slow:
            broken.append(
                f"throughput took {max(slow)} s to recover after a Redis fault "
                f"(target {RECOVERY_TARGET} s)"
            )
    return broken


def with_overrides(profile: Profile, **changes: Any) -> Profile:
    """``profile`` with some fields changed."""
    return replace(profile, **changes)
