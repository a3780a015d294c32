"""Workflows on Redis across processes: a chain survives a worker killed between two steps.

Each worker is a ``chicory worker flow_app:app`` subprocess on a private redis-server with a
short lease. The first worker kills itself (SIGKILL) right after storing a step's result,
before publishing the next step or acking (``flow_app.DieBetweenSteps``); a second worker
then takes over.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from chicory import Chicory, DeliveryMode
from chicory.records import TaskState
from chicory.workflow import chain, chord
from processes import RedisServer, own_redis, worker_process

pytestmark = pytest.mark.slow

LEASE = 2.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with own_redis(tmp_path) as running:
        yield running


def producer(url: str) -> Chicory:
    """The producer side of tests/flow_app.py."""
    app = Chicory(url)

    @app.task(name="f.step.alo", delivery_mode=DeliveryMode.AT_LEAST_ONCE)
    async def step_alo(n: int) -> int: ...

    @app.task(name="f.step.amo", delivery_mode=DeliveryMode.AT_MOST_ONCE)
    async def step_amo(n: int) -> int: ...

    return app


def starts(runs: Path) -> Counter[str]:
    return Counter(
        line.split()[1] for line in runs.read_text().splitlines() if line.startswith("start")
    )


async def test_an_at_least_once_chain_survives_a_worker_killed_between_steps(
    server: RedisServer, tmp_path: Path
) -> None:
    url, runs = f"{server.url}?lease_seconds={LEASE}", tmp_path / "runs.txt"
    app = producer(url)
    step = app.tasks["f.step.alo"]
    flow = await chain(step.s(0), step.s(), step.s(), step.s()).apply_async()
    with worker_process(
        url, runs, "-c", "1", app="flow_app:app", env={"CHICORY_TEST_DIE_AFTER": "2"}
    ) as doomed:
        assert doomed.wait(60) == -9, doomed.output()
    assert "die 2" in runs.read_text()
    with worker_process(url, runs, "-c", "1", app="flow_app:app"):
        assert await flow.get(timeout=60) == 4
    # Step 1 (input 1, returning 2) was redelivered with its result stored: acked unrun.
    assert starts(runs) == Counter({"0": 1, "1": 1, "2": 1, "3": 1}), runs.read_text()
    await app.close()


async def test_an_at_most_once_chain_stops_where_its_worker_was_killed(
    server: RedisServer, tmp_path: Path
) -> None:
    url, runs = f"{server.url}?lease_seconds={LEASE}", tmp_path / "runs.txt"
    app = producer(url)
    step = app.tasks["f.step.amo"]
    flow = await chain(step.s(0), step.s(), step.s(), step.s()).apply_async()
    with worker_process(
        url, runs, "-c", "1", app="flow_app:app", env={"CHICORY_TEST_DIE_AFTER": "2"}
    ) as doomed:
        assert doomed.wait(60) == -9, doomed.output()
    with worker_process(url, runs, "-c", "1", app="flow_app:app"):
        await anyio.sleep(3 * LEASE)  # well past the dead worker's lease
        assert await flow.state() is TaskState.PENDING
    assert starts(runs) == Counter({"0": 1, "1": 1}), runs.read_text()
    await app.close()


async def test_a_chord_on_redis_across_two_worker_processes(
    server: RedisServer, tmp_path: Path
) -> None:
    url, runs = server.url, tmp_path / "runs.txt"
    app = producer(url)
    step = app.tasks["f.step.alo"]

    @app.task(name="f.total")
    async def total(values: list[int]) -> int: ...

    flow = await chord([step.s(i) for i in range(50)], total.s()).apply_async()
    with (
        worker_process(url, runs, "-c", "1", app="flow_app:app"),
        worker_process(url, runs, "-c", "1", app="flow_app:app"),
    ):
        assert await flow.get(timeout=60) == sum(i + 1 for i in range(50))
    assert starts(runs)["total50"] == 1, runs.read_text()
    await app.close()
