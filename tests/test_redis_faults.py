"""Fault injection on a Redis of the test's own (another loopback port, persistence on).

Workers run as real subprocesses (``chicory worker``) and are killed with SIGKILL; the Redis
server is restarted under a running worker. Task events go to a file, so the tests can count
exactly what ran, and how often, across processes.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from fault_scenarios import N, mid_batch, producer

from chicory.errors import BrokerConnectionError, BrokerError
from chicory_redis.results import RedisResultBackend
from e2e_support import drained, eventually
from processes import RedisServer, own_redis, run_counts, worker_process

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with own_redis(tmp_path) as running:
        yield running


def fast_leases(server: RedisServer) -> str:
    return f"{server.url}?lease_seconds=1&reclaim_interval=0.25"


async def test_sigkill_mid_batch_loses_no_at_least_once_task(
    server: RedisServer, tmp_path: Path
) -> None:
    url, runs = fast_leases(server), tmp_path / "runs.txt"
    app = producer(url)
    results = await app.tasks["w.alo"].delay_many((i, 0.2) for i in range(N))
    with worker_process(url, runs, "--concurrency", "10") as first:
        await eventually(lambda: mid_batch(runs), timeout=30)
        first.signal(signal.SIGKILL)
        first.wait(10)
    started, ended = run_counts(runs)
    assert len(ended) < N, "the worker must die mid-run for this test to mean anything"
    with worker_process(url, runs, "--concurrency", "10") as second:
        assert [await r.get(timeout=60) for r in results] == list(range(N))
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0
    started, ended = run_counts(runs)
    assert set(ended) == set(range(N))  # nothing lost
    duplicates = sum(count - 1 for count in started.values())
    assert duplicates <= 20  # at most what the killed worker held: concurrency + prefetch
    counts = await (await app.connected_broker()).counts("default")
    assert (counts.ready, counts.in_flight, counts.delayed) == (0, 0, 0)
    await app.close()


async def test_sigkill_mid_batch_runs_no_at_most_once_task_twice(
    server: RedisServer, tmp_path: Path
) -> None:
    url, runs = fast_leases(server), tmp_path / "runs.txt"
    app = producer(url)
    await app.tasks["w.amo"].delay_many((i, 0.2) for i in range(N))
    with worker_process(url, runs, "--concurrency", "10") as first:
        await eventually(lambda: mid_batch(runs), timeout=30)
        first.signal(signal.SIGKILL)
        first.wait(10)
    broker = await app.connected_broker()
    with worker_process(url, runs, "--concurrency", "10") as second:
        await eventually(lambda: drained(broker), timeout=60)
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0
    started, ended = run_counts(runs)
    assert max(started.values()) == 1  # never twice
    lost = set(range(N)) - set(ended)
    assert lost  # the killed worker's running tasks are gone: that is at-most-once
    assert len(lost) <= 10  # ...but only those that were running (prefetched ones came back)
    assert N - len(started) <= 10  # acked-but-not-yet-started is the only other way to lose
    await app.close()


async def test_worker_recovers_from_a_redis_restart(server: RedisServer, tmp_path: Path) -> None:
    url, runs = f"{server.url}?lease_seconds=2&reclaim_interval=0.5", tmp_path / "runs.txt"
    app = producer(url)
    results = await app.tasks["w.alo"].delay_many((i, 0.05) for i in range(60))
    with worker_process(url, runs, "--concurrency", "4") as worker:
        await eventually(lambda: len(run_counts(runs)[1]) >= 10, timeout=30)
        server.stop()
        await eventually(lambda: "onnect" in worker.output(), timeout=20)
        server.start()
        assert [await r.get(timeout=90) for r in results] == list(range(60))
        assert worker.process.poll() is None  # it never crashed
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    _, ended = run_counts(runs)
    assert set(ended) == set(range(60))
    await app.close()


async def test_task_longer_than_the_lease_runs_once_while_its_worker_lives(
    server: RedisServer, tmp_path: Path
) -> None:
    url, runs = fast_leases(server), tmp_path / "runs.txt"
    app = producer(url)
    with (
        worker_process(url, runs, "--concurrency", "2") as one,
        worker_process(url, runs, "--concurrency", "2") as two,
    ):
        result = await app.tasks["w.alo"].delay(7, 3.5)  # three and a half leases
        assert await result.get(timeout=30) == 7
        for worker in (one, two):
            worker.signal(signal.SIGTERM)
        assert one.wait(30) == two.wait(30) == 0
    started, ended = run_counts(runs)
    assert started[7] == ended[7] == 1
    await app.close()


async def test_a_result_awaited_across_a_redis_restart_arrives(server: RedisServer) -> None:
    """A waiter registered before the server restarts gets its record after it: the
    listener re-subscribes, and its read of the waiting keys does not fail on a pooled
    connection that died with the old server process."""
    waiter = RedisResultBackend.from_url(server.url, reconnect_backoff=0.05)
    await waiter.connect()
    writer = RedisResultBackend.from_url(server.url)
    try:
        waiting = asyncio.create_task(waiter.wait("t1", timeout=20))
        await eventually(lambda: waiter.waiters.reads >= 1)  # its pooled connection is used
        server.stop()
        server.start()
        await writer.connect()
        await writer.store("t1", b"after the restart", final=True, ttl=60)
        assert await waiting == b"after the restart"
    finally:
        await waiter.close()
        await writer.close()


def set_maxmemory(server: RedisServer, full: bool) -> None:
    """Make the server full (``maxmemory`` below what it uses, ``noeviction``: it refuses
    every write that needs memory) or give it room again."""
    admin = server.admin()
    try:
        admin.config_set("maxmemory-policy", "noeviction")
        used = int(admin.info("memory")["used_memory"])
        admin.config_set("maxmemory", used // 2 if full else 0)
    finally:
        admin.close()


async def test_a_full_redis_refuses_publishes_and_says_why(server: RedisServer) -> None:
    app = producer(server.url)
    await app.tasks["w.alo"].delay(0, 0.0)
    set_maxmemory(server, full=True)
    for publish in (
        lambda: app.tasks["w.alo"].delay(1, 0.0),
        lambda: app.tasks["w.alo"].delay_many([(2, 0.0), (3, 0.0)]),
    ):
        with pytest.raises(BrokerError) as refused:
            await publish()
        assert not isinstance(refused.value, BrokerConnectionError)
        assert "maxmemory" in str(refused.value)
        assert "noeviction" in str(refused.value)
    await app.close()


async def test_a_full_redis_holds_results_back_and_loses_nothing(
    server: RedisServer, tmp_path: Path
) -> None:
    """Redis fills up under a running worker: the tasks it holds finish, but their results
    cannot be stored, so the worker keeps their deliveries and tries the writes again (it
    does not hand the tasks back to run again). Once there is room again every result
    arrives, and no task ran twice."""
    url, runs = server.url, tmp_path / "runs.txt"
    app = producer(url)
    results = await app.tasks["w.alo"].delay_many((i, 0.2) for i in range(30))
    with worker_process(url, runs, "--concurrency", "4") as worker:
        await eventually(lambda: len(run_counts(runs)[0]) >= 1, timeout=30)
        set_maxmemory(server, full=True)
        ended_while_full = len(run_counts(runs)[1]) + 4
        await eventually(lambda: len(run_counts(runs)[1]) >= ended_while_full, timeout=30)
        admin = server.admin()
        stored = len(admin.keys("chicory:result:*"))
        admin.close()
        assert stored < len(run_counts(runs)[1])  # results of finished tasks wait
        set_maxmemory(server, full=False)
        assert [await r.get(timeout=30) for r in results] == list(range(30))
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    started, _ = run_counts(runs)
    assert set(started) == set(range(30))
    assert max(started.values()) == 1
    await app.close()
