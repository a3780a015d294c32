"""Flow limits hold across worker processes sharing one Redis.

Two ``chicory worker`` subprocesses run ``tests/limits_app.py``; what the tasks observe goes
to Redis lists (start times by the server's clock, runs inside at once), so the checks count
events rather than time the test itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import redis

from chicory import Chicory
from e2e_support import eventually
from processes import delete_keys, worker_process

pytestmark = pytest.mark.slow

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"chicory-flow-{uuid.uuid4().hex[:8]}"
    yield name
    delete_keys(name)


def producer(url: str) -> Chicory:
    """The producer side of ``limits_app.py``, with the same limits."""
    app = Chicory(url)

    @app.task(name="flow.rated", rate_limit="50/s")
    async def rated(n: int) -> None: ...

    @app.task(name="flow.capped", concurrency_limit=3)
    async def capped(n: int) -> None: ...

    @app.task(name="flow.free")
    async def free(n: int) -> None: ...

    return app


def workers(stack: ExitStack, url: str, prefix: str, tmp_path: Path, count: int = 2) -> None:
    env = {"CHICORY_TEST_KEYS": prefix, "CHICORY_TEST_REDIS": REDIS}
    for n in range(count):
        stack.enter_context(
            worker_process(
                url,
                tmp_path / f"runs{n}",
                "--concurrency",
                "8",
                app="limits_app:app",
                env=env,
            )
        )


async def wait_for(client: redis.Redis, key: str, count: int, timeout: float) -> None:
    await eventually(lambda: client.llen(key) >= count, timeout=timeout)


async def test_a_rate_limit_holds_across_two_worker_processes(prefix: str, tmp_path: Path) -> None:
    """50/s shared by two processes of 8 runners: the busiest 10 s hold 500 starts ± 10%,
    and no two seconds hold more than 110."""
    url = f"{REDIS}?key_prefix={prefix}"
    app = producer(url)
    async with app:
        rated = app.tasks["flow.rated"]
        await rated.delay_many([(n,) for n in range(551)])
    client = redis.Redis.from_url(REDIS)
    with ExitStack() as stack:
        workers(stack, url, prefix, tmp_path)
        await wait_for(client, f"{prefix}:starts", 551, timeout=90)
    starts = sorted(int(x) / 1e6 for x in client.lrange(f"{prefix}:starts", 0, -1))
    client.close()
    assert len(starts) == 551, "a rate-limited task ran twice or was lost"

    def most_within(seconds: float) -> int:
        return max(
            sum(1 for t in starts[i : i + 600] if t < start + seconds)
            for i, start in enumerate(starts)
        )

    ten = most_within(10.0)
    assert 450 <= ten <= 550, f"{ten} starts in the busiest 10 s under a limit of 50/s"
    # Starts are stamped by the task once running, so a loaded machine can bunch a few
    # granted starts together: two seconds smooth that out.
    busiest = most_within(2.0)
    assert busiest <= 110, f"{busiest} starts within two seconds under a limit of 50/s"


async def test_a_concurrency_limit_holds_across_two_worker_processes(
    prefix: str, tmp_path: Path
) -> None:
    """Limit 3 shared by two processes of 8 runners: never more than 3 inside at once, and
    the unlimited tasks enqueued behind them all run meanwhile."""
    url = f"{REDIS}?key_prefix={prefix}"
    app = producer(url)
    async with app:
        await app.tasks["flow.capped"].delay_many([(n,) for n in range(60)])
        await app.tasks["flow.free"].delay_many([(n,) for n in range(20)])
    client = redis.Redis.from_url(REDIS)
    with ExitStack() as stack:
        workers(stack, url, prefix, tmp_path)
        await wait_for(client, f"{prefix}:seen", 60, timeout=120)
    seen = [int(x) for x in client.lrange(f"{prefix}:seen", 0, -1)]
    free_runs = int(client.get(f"{prefix}:free") or 0)
    client.close()
    assert len(seen) == 60
    assert max(seen) <= 3, f"{max(seen)} runs at once under concurrency_limit=3"
    assert max(seen) == 3, "the limit was never reached: the workers did not run in parallel"
    assert free_runs == 20
