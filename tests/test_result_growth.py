"""Results cannot grow without bound: a per-task result_ttl, and a cap on a record's size."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from chicory import Chicory, DeliveryMode, RetryPolicy, TaskFailedError
from chicory.clock import ManualClock
from chicory.errors import ConfigurationError
from chicory_memory import MemoryResultBackend
from e2e_support import eventually, serving
from processes import delete_keys

AMO = DeliveryMode.AT_MOST_ONCE
ALO = DeliveryMode.AT_LEAST_ONCE
BOTH = pytest.mark.parametrize("mode", [AMO, ALO], ids=["at_most_once", "at_least_once"])


@BOTH
async def test_a_task_keeps_its_results_for_its_own_result_ttl(mode: DeliveryMode) -> None:
    """Tasks with and without a result_ttl of their own finish in one batch; each record
    is kept for its own task's time."""
    clock = ManualClock()
    app = Chicory(broker="memory://", backend=MemoryResultBackend(clock=clock), result_ttl=600)

    @app.task(name="t.brief", delivery_mode=mode, result_ttl=5)
    async def brief(n: int) -> int:
        return n

    @app.task(name="t.kept", delivery_mode=mode)
    async def kept(n: int) -> int:
        return n

    short = await brief.delay_many([(n,) for n in range(20)])
    long = await kept.delay_many([(n,) for n in range(20)])
    async with serving(app, concurrency=40):
        for result in [*short, *long]:
            await result.get(timeout=5)
    clock.advance(10)
    assert [await r.info() for r in short] == [None] * 20
    assert None not in [await r.info() for r in long]
    clock.advance(600)
    assert [await r.info() for r in long] == [None] * 20
    await app.close()


async def test_result_ttls_reach_redis() -> None:
    prefix = f"chicory-test-{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    app = Chicory(url, result_ttl=3600)

    @app.task(name="t.brief", result_ttl=60)
    async def brief() -> str:
        return "b"

    @app.task(name="t.kept")
    async def kept() -> str:
        return "k"

    @app.task(name="t.failing", result_ttl=90, retry_policy=RetryPolicy(max_retries=0))
    async def failing() -> None:
        raise ValueError("no")

    client = aioredis.Redis()
    try:
        async with serving(app):
            b, k, f = await brief.delay(), await kept.delay(), await failing.delay()
            assert await b.get(timeout=5) == "b"
            assert await k.get(timeout=5) == "k"
            with pytest.raises(TaskFailedError):
                await f.get(timeout=5)
        ttls = [await client.pttl(f"{prefix}:result:{r.id}") for r in (b, k, f)]
        assert 55_000 < ttls[0] <= 60_000
        assert 3_500_000 < ttls[1] <= 3_600_000
        assert 85_000 < ttls[2] <= 90_000  # a failure's record too
    finally:
        await client.aclose()
        await app.close()
        delete_keys(prefix)


@BOTH
async def test_a_result_over_max_result_bytes_fails_the_task_once(mode: DeliveryMode) -> None:
    """The run fails with ResultTooLargeError (not retried: it would not fit the next time
    either), its small FAILURE record is stored and the message dead-lettered; a task with
    a larger limit of its own stores the same result."""
    app = Chicory(
        broker="memory://", max_result_bytes=10_000, retry_policy=RetryPolicy(max_retries=3)
    )
    runs: list[int] = []

    @app.task(name="t.big", delivery_mode=mode)
    async def big(size: int) -> str:
        runs.append(size)
        return "x" * size

    @app.task(name="t.bigger", delivery_mode=mode, max_result_bytes=100_000)
    async def bigger(size: int) -> str:
        return "x" * size

    async with serving(app):
        assert await (await big.delay(100)).get(timeout=5) == "x" * 100
        with pytest.raises(TaskFailedError) as failed:
            await (await big.delay(20_000)).get(timeout=5)
        assert len(await (await bigger.delay(20_000)).get(timeout=5)) == 20_000

        async def dead() -> bool:
            return (await app.broker.counts("default")).dead == 1

        await eventually(dead)
    assert failed.value.exc_type == "chicory.errors.ResultTooLargeError"
    assert "max_result_bytes=10000" in failed.value.exc_message
    assert runs == [100, 20_000]  # not retried
    await app.close()


def test_result_limits_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="max_result_bytes"):
        Chicory(broker="memory://", max_result_bytes=0)
    app = Chicory(broker="memory://", max_result_bytes=None)
    with pytest.raises(ConfigurationError, match="result_ttl"):

        @app.task(name="t.x", result_ttl=0)
        async def x() -> None: ...

    @app.task(name="t.y")
    async def y() -> None: ...

    assert y.max_result_bytes is None
    assert y.result_ttl == app.result_ttl
