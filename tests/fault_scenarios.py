"""Fault scenarios every shared broker must survive, with real worker processes.

The brokers' fault tests (Redis, PostgreSQL, SQLite) call these with a URL of their own
(short leases, a private server or file) and a directory for the workers' runs files. The
workers run ``tests/worker_app.py`` through ``chicory worker``; each writes a line per task
start and end, so a scenario counts exactly what ran, where and how often:

* :func:`kill_one_of_two_at_least_once`: two workers share the queue, one is SIGKILLed in the
  middle of a batch; the survivor takes over the dead one's claims once their leases lapse,
  nothing is lost, and at most what the dead worker held ran twice.
* :func:`kill_one_of_two_at_most_once`: the same with at-most-once tasks: nothing runs twice,
  and only what the dead worker was running is lost.
* :func:`long_task_runs_once`: a task three and a half leases long runs once while its
  worker lives, with another worker standing by to take a lapsed lease.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path

from chicory import Chicory, DeliveryMode
from chicory.inspection import InspectableBroker
from e2e_support import drained, eventually
from processes import run_counts, worker_process

#: Tasks per batch.
N = 120

#: What one killed worker may hold: its concurrency (10) plus its prefetch (10).
HELD = 20


def producer(url: str) -> Chicory:
    """The producer side: the same task names and signatures as tests/worker_app.py."""
    app = Chicory(url)

    @app.task(name="w.alo", delivery_mode=DeliveryMode.AT_LEAST_ONCE)
    async def alo(n: int, seconds: float) -> int: ...

    @app.task(name="w.amo", delivery_mode=DeliveryMode.AT_MOST_ONCE)
    async def amo(n: int, seconds: float) -> int: ...

    return app


def mid_batch(runs: Path, finished: int = 30) -> bool:
    """The worker writing ``runs`` finished at least ``finished`` tasks and runs some now."""
    started, ended = run_counts(runs)
    return len(ended) >= finished and len(started) > len(ended)


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
    """Wait until two worker processes consume the default queue.

    On a loaded machine one may start seconds after the other, and a kill before the second
    consumed would prove nothing about sharing the queue.
    """
    broker = await app.connected_broker()
    assert isinstance(broker, InspectableBroker)

    async def two() -> bool:
        (stats,) = await broker.queue_stats(["default"])
        return stats.consumers == 2

    await eventually(two, timeout=60)


async def kill_one_of_two_at_least_once(url: str, directory: Path, finished: int = 30) -> None:
    """SIGKILL one of two workers mid-batch: no at-least-once task is lost.

    ``finished`` is how many tasks the doomed worker must have finished before the kill.
    """
    doomed_runs, survivor_runs = directory / "doomed.txt", directory / "survivor.txt"
    app = producer(url)
    results = await app.tasks["w.alo"].delay_many((i, 0.2) for i in range(N))
    with (
        worker_process(url, doomed_runs, "--concurrency", "10") as doomed,
        worker_process(url, survivor_runs, "--concurrency", "10") as survivor,
    ):
        await both_consuming(app)
        await eventually(lambda: mid_batch(doomed_runs, finished), timeout=60)
        doomed.signal(signal.SIGKILL)
        doomed.wait(10)
        assert [await r.get(timeout=120) for r in results] == list(range(N))
        survivor.signal(signal.SIGTERM)
        assert survivor.wait(30) == 0
    started, ended = all_runs(doomed_runs, survivor_runs)
    assert set(ended) == set(range(N))  # nothing lost
    duplicates = sum(count - 1 for count in started.values())
    assert duplicates >= 1  # what the killed worker was running ran again
    assert duplicates <= HELD  # at most what the killed worker held
    counts = await (await app.connected_broker()).counts("default")
    assert (counts.ready, counts.in_flight, counts.delayed) == (0, 0, 0)
    await app.close()


async def kill_one_of_two_at_most_once(url: str, directory: Path, finished: int = 30) -> None:
    """SIGKILL one of two workers mid-batch: no at-most-once task runs twice."""
    doomed_runs, survivor_runs = directory / "doomed.txt", directory / "survivor.txt"
    app = producer(url)
    await app.tasks["w.amo"].delay_many((i, 0.2) for i in range(N))
    broker = await app.connected_broker()
    with (
        worker_process(url, doomed_runs, "--concurrency", "10") as doomed,
        worker_process(url, survivor_runs, "--concurrency", "10") as survivor,
    ):
        await both_consuming(app)
        await eventually(lambda: mid_batch(doomed_runs, finished), timeout=60)
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


async def long_task_runs_once(url: str, directory: Path) -> None:
    """A task three and a half leases long runs once while its worker lives.

    ``url`` must give the broker 1 s leases.
    """
    runs = directory / "runs.txt"
    app = producer(url)
    with (
        worker_process(url, runs, "--concurrency", "2") as one,
        worker_process(url, runs, "--concurrency", "2") as two,
    ):
        await both_consuming(app)  # the other worker stands ready to take a lapsed lease
        result = await app.tasks["w.alo"].delay(7, 3.5)
        assert await result.get(timeout=60) == 7
        for worker in (one, two):
            worker.signal(signal.SIGTERM)
        assert one.wait(30) == two.wait(30) == 0
    started, ended = run_counts(runs)
    assert started[7] == ended[7] == 1
    await app.close()
