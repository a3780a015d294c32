"""Worker processes, recycling, reload and cancellation, with real processes on a private Redis.

``chicory worker --processes N`` runs as a subprocess; its children are real ``spawn``\\ ed
processes. Task events go to a file (see ``worker_app.py``), so the tests count what ran,
where, and how often, across processes, including ones killed with SIGKILL.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from chicory import Chicory, DeliveryMode, TaskCancelledError
from chicory.admin import Admin
from chicory.records import TaskState
from e2e_support import eventually
from processes import RedisServer, child_pids, own_redis, run_counts, worker_process

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with own_redis(tmp_path) as running:
        yield running


def producer(url: str) -> Chicory:
    """The producer side of tests/worker_app.py."""
    app = Chicory(url)

    @app.task(name="w.alo", delivery_mode=DeliveryMode.AT_LEAST_ONCE)
    async def alo(n: int, seconds: float) -> int: ...

    @app.task(name="w.pid")
    async def pid(n: int, seconds: float) -> int: ...

    return app


async def test_two_processes_run_tasks_and_a_killed_child_is_replaced(
    server: RedisServer, tmp_path: Path
) -> None:
    app, runs = producer(server.url), tmp_path / "runs.txt"
    pid_task = app.tasks["w.pid"]
    with worker_process(server.url, runs, "--processes", "2", "-c", "4") as supervisor:
        admin = Admin(app)

        async def both_consuming() -> bool:
            return len(await admin.workers()) == 2

        # A child that starts seconds before the other (a busy machine) could take all of it.
        await eventually(both_consuming, timeout=60)
        first = await pid_task.delay_many((i, 0.05) for i in range(60))
        pids = {await r.get(timeout=60) for r in first}
        assert len(pids) == 2, f"tasks ran in {pids}"
        assert supervisor.process.pid not in pids  # the supervisor runs no task itself
        victim, survivor = sorted(pids)
        os.kill(victim, signal.SIGKILL)
        await eventually(lambda: "was killed by SIGKILL" in supervisor.output(), timeout=20)
        await eventually(lambda: len(child_pids(supervisor.process.pid)) == 2, timeout=30)
        replacement = child_pids(supervisor.process.pid) - {survivor}
        assert victim not in replacement
        later = await pid_task.delay_many((100 + i, 0.05) for i in range(60))
        assert {await r.get(timeout=60) for r in later} <= {survivor, *replacement}
        supervisor.signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0
    assert "starting another in" in supervisor.output()


async def test_sigterm_drains_every_child(server: RedisServer, tmp_path: Path) -> None:
    app, runs = producer(server.url), tmp_path / "runs.txt"
    results = await app.tasks["w.alo"].delay_many((i, 0.5) for i in range(8))
    with worker_process(server.url, runs, "--processes", "2", "-c", "2") as supervisor:
        await eventually(lambda: len(run_counts(runs)[0]) >= 4, timeout=30)
        supervisor.signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0
    started, ended = run_counts(runs)
    assert set(started) == set(ended), "a task was cut off instead of drained"
    assert max(started.values()) == 1
    broker = await app.connected_broker()
    counts = await broker.counts("default")
    assert counts.in_flight == 0
    assert counts.ready == 8 - len(ended)  # the rest was handed back, not lost
    for n in ended:
        assert await results[n].state() is TaskState.SUCCESS
    await app.close()


async def test_recycling_after_50_tasks_loses_no_at_least_once_task(
    server: RedisServer, tmp_path: Path
) -> None:
    app, runs = producer(server.url), tmp_path / "runs.txt"
    n = 240
    results = await app.tasks["w.alo"].delay_many((i, 0.01) for i in range(n))
    with worker_process(
        server.url, runs, "--processes", "2", "-c", "4", "--max-tasks-per-child", "50"
    ) as supervisor:
        assert [await r.get(timeout=120) for r in results] == list(range(n))
        supervisor.signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0
    started, ended = run_counts(runs)
    assert set(ended) == set(range(n))  # nothing lost
    assert max(started.values()) == 1  # a graceful recycle runs nothing twice
    log = supervisor.output()
    assert log.count("was recycled; starting a fresh one") >= 3, log[-3000:]


async def test_a_child_over_its_memory_limit_is_recycled(
    server: RedisServer, tmp_path: Path
) -> None:
    app, runs = producer(server.url), tmp_path / "runs.txt"
    with worker_process(
        server.url, runs, "--processes", "1", "--max-memory-per-child", "1"
    ) as supervisor:  # 1 MiB: any Python process is over it within a second
        await eventually(lambda: "was recycled; starting a fresh one" in supervisor.output(), 60)
        results = await app.tasks["w.alo"].delay_many((i, 0.01) for i in range(20))
        assert [await r.get(timeout=60) for r in results] == list(range(20))
        supervisor.signal(signal.SIGTERM)
        assert supervisor.wait(30) == 0
    assert "MiB over 1 MiB" in supervisor.output()
    await app.close()


def test_a_supervisor_gives_up_on_children_that_crash_at_start(
    server: RedisServer, tmp_path: Path
) -> None:
    with worker_process(
        server.url, tmp_path / "runs.txt", "--processes", "2", app="crashing_app:app"
    ) as supervisor:
        assert supervisor.wait(120) == 1
    log = supervisor.output()
    assert "refuses to start in a worker process" in log
    assert "before it was ready, 5 times in a row: giving up" in log


async def test_reload_restarts_the_worker_when_a_source_file_changes(
    server: RedisServer, tmp_path: Path
) -> None:
    source = tmp_path / "reloaded_app.py"
    body = """
        from chicory import Chicory

        app = Chicory()


        @app.task(name="r.version")
        async def version() -> str:
            return {version!r}
    """
    source.write_text(textwrap.dedent(body.format(version="one")))
    producer_app = Chicory(server.url)

    @producer_app.task(name="r.version")
    async def version() -> str: ...

    with worker_process(
        server.url, tmp_path / "runs.txt", "--reload", app="reloaded_app:app", directory=tmp_path
    ) as w:
        assert await (await version.delay()).get(timeout=60) == "one"
        source.write_text(textwrap.dedent(body.format(version="two")))
        await eventually(lambda: "sources changed: restarting" in w.output(), timeout=30)
        await eventually(lambda: w.output().count("started worker process 1") == 2, timeout=30)
        assert await (await version.delay()).get(timeout=60) == "two"
        w.signal(signal.SIGTERM)
        assert w.wait(30) == 0
    await producer_app.close()


async def test_cancelling_from_another_process_stops_a_running_task_and_a_queued_one(
    server: RedisServer, tmp_path: Path
) -> None:
    app, runs = producer(server.url), tmp_path / "runs.txt"
    alo = app.tasks["w.alo"]
    with worker_process(server.url, runs, "-c", "1") as worker:
        running = await alo.delay(1, 30.0)
        queued = await alo.delay(2, 0.01)
        await eventually(lambda: run_counts(runs)[0][1] == 1, timeout=30)
        await queued.cancel()
        await running.cancel()
        with pytest.raises(TaskCancelledError, match="while running"):
            await running.get(timeout=10)
        with pytest.raises(TaskCancelledError, match="before it started"):
            await queued.get(timeout=10)
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    started, ended = run_counts(runs)
    assert started == {1: 1}, "the queued task ran, or the running one started again"
    assert not ended, "the running task was not stopped at its await"
    await app.close()


def test_processes_need_a_shared_broker(tmp_path: Path) -> None:
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "chicory.cli", "worker", "worker_app:app", "--processes", "2"],
        cwd=Path(__file__).parent,
        env={**os.environ, "CHICORY_BROKER_URL": "memory://"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "need a shared broker" in done.stderr


def test_a_supervisor_whose_scheduler_ends_stops_its_children(
    server: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from datetime import timedelta

    from chicory.processes import ChildConfig, Supervisor
    from chicory.scheduling import Scheduler
    from processes import TESTS, free_port

    monkeypatch.setenv("CHICORY_BROKER_URL", server.url)  # the children's, through spawn
    monkeypatch.syspath_prepend(str(TESTS))
    unreachable = Chicory(f"redis://127.0.0.1:{free_port()}/0")

    @unreachable.periodic(every=timedelta(seconds=1), name="tick")
    @unreachable.task(name="w.tick")
    async def tick() -> None: ...

    config = ChildConfig(app="worker_app:app", cwd=str(TESTS))
    supervisor = Supervisor(config, processes=2, scheduler=Scheduler(unreachable))
    with caplog.at_level(logging.INFO, "chicory"):
        assert supervisor.run() == 1
    assert "the scheduler stopped: BrokerConnectionError" in caplog.text
    assert "stopping 2 worker process(es)" in caplog.text
