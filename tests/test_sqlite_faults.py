"""Fault injection on the SQLite broker: two worker processes share one database file.

Workers run as real subprocesses (``chicory worker``) and one is killed with SIGKILL in the
middle of a batch; the other one, still running, must take over what the dead one held once
its leases lapse (at-least-once: nothing lost) or never run anything twice (at-most-once).
Results go through the SQLite result backend on the same file, so the producer here waits
on them across processes. Each worker writes its task events to a file of its own, so the
tests kill a worker while it runs tasks, and count exactly what ran where.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

import pytest

from chicory import Chicory, DeliveryMode
from chicory_sqlite.broker import SqliteBroker
from e2e_support import drained, eventually
from processes import run_counts, worker_process

pytestmark = pytest.mark.slow

N = 120


def producer(url: str) -> Chicory:
    """The producer side: the same task names and signatures as tests/worker_app.py."""
    app = Chicory(url)

    @app.task(name="w.alo", delivery_mode=DeliveryMode.AT_LEAST_ONCE)
    async def alo(n: int, seconds: float) -> int: ...

    @app.task(name="w.amo", delivery_mode=DeliveryMode.AT_MOST_ONCE)
    async def amo(n: int, seconds: float) -> int: ...

    return app


def database_url(tmp_path: Path, lease_seconds: float = 1.0) -> str:
    """A database file of the test's own, with short leases."""
    return f"sqlite:///{tmp_path / 'queue.sqlite3'}?lease_seconds={lease_seconds}"


def mid_batch(runs: Path) -> bool:
    """The worker writing ``runs`` finished at least 10 tasks and runs some right now."""
    started, ended = run_counts(runs)
    return len(ended) >= 10 and len(started) > len(ended)


def all_runs(*files: Path) -> tuple[Counter[int], Counter[int]]:
    """How often each task started and ended, summed over the workers' runs files."""
    started: Counter[int] = Counter()
    ended: Counter[int] = Counter()
    for runs in files:
        one_started, one_ended = run_counts(runs)
        started.update(one_started)
        ended.update(one_ended)
    return started, ended


async def both_consuming(app: Chicory) -> None:
    """Wait until both worker processes fetched (each registers at its first fetch, which
    claims work when any is ready): on a loaded machine one may start seconds after the
    other, and a kill before it did would prove nothing about sharing the file."""
    broker = await app.connected_broker()
    assert isinstance(broker, SqliteBroker)

    async def two() -> bool:
        (stats,) = await broker.queue_stats(["default"])
        return stats.consumers == 2

    await eventually(two, timeout=60)


async def test_sigkill_mid_batch_loses_no_at_least_once_task(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    doomed_runs, survivor_runs = tmp_path / "doomed.txt", tmp_path / "survivor.txt"
    app = producer(url)
    results = await app.tasks["w.alo"].delay_many((i, 0.2) for i in range(N))
    with (
        worker_process(url, doomed_runs, "--concurrency", "10") as doomed,
        worker_process(url, survivor_runs, "--concurrency", "10") as survivor,
    ):
        await both_consuming(app)
        await eventually(lambda: mid_batch(doomed_runs), timeout=60)
        doomed.signal(signal.SIGKILL)
        doomed.wait(10)
        assert [await r.get(timeout=120) for r in results] == list(range(N))
        survivor.signal(signal.SIGTERM)
        assert survivor.wait(30) == 0
    started, ended = all_runs(doomed_runs, survivor_runs)
    assert set(ended) == set(range(N))  # nothing lost
    duplicates = sum(count - 1 for count in started.values())
    assert duplicates >= 1  # what the killed worker was running ran again
    assert duplicates <= 20  # at most what the killed worker held: concurrency + prefetch
    counts = await (await app.connected_broker()).counts("default")
    assert (counts.ready, counts.in_flight, counts.delayed) == (0, 0, 0)
    await app.close()


async def test_sigkill_mid_batch_runs_no_at_most_once_task_twice(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    doomed_runs, survivor_runs = tmp_path / "doomed.txt", tmp_path / "survivor.txt"
    app = producer(url)
    await app.tasks["w.amo"].delay_many((i, 0.2) for i in range(N))
    broker = await app.connected_broker()
    with (
        worker_process(url, doomed_runs, "--concurrency", "10") as doomed,
        worker_process(url, survivor_runs, "--concurrency", "10") as survivor,
    ):
        await both_consuming(app)
        await eventually(lambda: mid_batch(doomed_runs), timeout=60)
        doomed.signal(signal.SIGKILL)
        doomed.wait(10)

        await eventually(lambda: drained(broker), timeout=120)
        survivor.signal(signal.SIGTERM)
        assert survivor.wait(30) == 0
    started, ended = all_runs(doomed_runs, survivor_runs)
    assert max(started.values()) == 1  # never twice
    lost = set(range(N)) - set(ended)
    assert lost  # the killed worker's running tasks are gone: that is at-most-once
    assert len(lost) <= 10  # ...only those (what it had prefetched came back)
    assert N - len(started) <= 10  # acked-but-not-yet-started is the only other way to lose
    await app.close()


async def test_task_longer_than_the_lease_runs_once_while_its_worker_lives(
    tmp_path: Path,
) -> None:
    url, runs = database_url(tmp_path), tmp_path / "runs.txt"
    app = producer(url)
    with (
        worker_process(url, runs, "--concurrency", "2") as one,
        worker_process(url, runs, "--concurrency", "2") as two,
    ):
        await both_consuming(app)  # the other worker stands ready to take a lapsed lease
        result = await app.tasks["w.alo"].delay(7, 3.5)  # three and a half leases
        assert await result.get(timeout=60) == 7
        for worker in (one, two):
            worker.signal(signal.SIGTERM)
        assert one.wait(30) == two.wait(30) == 0
    started, ended = run_counts(runs)
    assert started[7] == ended[7] == 1
    await app.close()
