"""Unique enqueue end to end: ``apply_async(unique=...)``, its duplicates and when a key frees.

The broker's primitives are proved by the conformance suite (``UniqueSuite``); these tests
prove what core builds on them: the key is held while the run is queued, delayed, retrying or
running, freed by the worker once the run is final (success, failure, cancellation), kept
``unique_for`` seconds at least, and refused on a broker without the capability.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import timedelta

import anyio
import attrs
import pytest

from chicory import Chicory, DeliveryMode, RetryPolicy, TaskCancelledError, TaskFailedError
from chicory.errors import CapabilityError, ConfigurationError
from chicory.testkit import BlockingLocalWorker, LocalWorker
from chicory.unique import UNIQUE_HEADER
from chicory_memory.broker import MemoryBroker
from chicory_redis.broker import RedisBroker
from e2e_support import eventually, serving

app = Chicory("memory://", load_entry_points=True)
runs: list[str] = []


@app.task(name="reports.nightly")
async def nightly(day: str) -> str:
    runs.append(day)
    return f"report {day}"


@app.task(name="reports.flaky", retry_policy=RetryPolicy(max_retries=2, delay=60, jitter=False))
async def flaky(day: str) -> str:
    runs.append(day)
    raise ConnectionError("the warehouse is down")


@app.task(name="reports.once", delivery_mode=DeliveryMode.AT_MOST_ONCE)
def once(day: str) -> str:
    runs.append(day)
    return day


@pytest.fixture(autouse=True)
def _clear_runs() -> None:
    runs.clear()


@pytest.fixture
async def local() -> AsyncIterator[LocalWorker]:
    async with LocalWorker(app) as worker:
        yield worker


async def test_a_held_key_enqueues_once_and_names_the_run_that_holds_it(
    local: LocalWorker,
) -> None:
    first = await nightly.apply_async(("12-06",), task_id="nightly:12-06", unique=True)
    again = await nightly.apply_async(("12-06",), task_id="nightly:12-06", unique=True)
    assert not first.duplicate
    assert again.duplicate
    assert again.id == first.id == "nightly:12-06"
    assert (await app.broker.counts("default")).ready == 1
    other = await nightly.apply_async(("12-07",), task_id="nightly:12-07", unique=True)
    assert not other.duplicate
    await local.run_until_idle()
    assert sorted(runs) == ["12-06", "12-07"]
    assert await again.get(timeout=0) == "report 12-06"  # the holder's result


async def test_a_unique_key_names_the_holder_by_its_task_id(local: LocalWorker) -> None:
    first = await nightly.apply_async(("a",), unique_key="report")
    again = await nightly.apply_async(("b",), unique_key="report")
    assert again.duplicate
    assert again.id == first.id, "a duplicate's handle is the holding run's"
    await local.run_until_idle()
    assert runs == ["a"]
    assert await again.get(timeout=0) == "report a"


async def test_the_key_frees_once_the_run_succeeded(local: LocalWorker) -> None:
    await nightly.apply_async(("1",), unique_key="k")
    await local.run_until_idle()
    after = await nightly.apply_async(("2",), unique_key="k")
    assert not after.duplicate, "the key stayed held after its run succeeded"
    await local.run_until_idle()
    assert runs == ["1", "2"]


async def test_an_at_most_once_run_frees_its_key_too(local: LocalWorker) -> None:
    await once.apply_async(("1",), unique_key="k")
    await local.run_until_idle()
    assert not (await once.apply_async(("2",), unique_key="k")).duplicate


async def test_unique_for_keeps_the_key_after_the_run(local: LocalWorker) -> None:
    await nightly.apply_async(("1",), unique_key="k", unique_for=timedelta(minutes=10))
    await local.run_until_idle()
    assert runs == ["1"]
    assert (await nightly.apply_async(("2",), unique_key="k", unique_for=600)).duplicate
    local.clock.advance(601)
    assert not (await nightly.apply_async(("3",), unique_key="k")).duplicate
    await local.run_until_idle()
    assert runs == ["1", "3"]


async def test_the_key_is_held_through_retries_and_freed_by_the_final_failure(
    local: LocalWorker,
) -> None:
    held = await flaky.apply_async(("d",), unique_key="flaky")
    await local.run_until_idle(advance_time=False)  # the first attempt, then a 60 s backoff
    assert runs == ["d"]
    assert (await flaky.apply_async(("d",), unique_key="flaky")).duplicate, "freed by a retry"
    await local.run_until_idle()
    assert runs == ["d", "d", "d"]
    with pytest.raises(TaskFailedError):
        await held.get(timeout=0)
    assert not (await flaky.apply_async(("d",), unique_key="flaky")).duplicate


async def test_a_cancelled_run_frees_its_key() -> None:
    own = Chicory("memory://", load_entry_points=True)
    ran: list[str] = []

    @own.task(name="t")
    async def task(day: str) -> None:
        ran.append(day)

    async with own:
        held = await task.apply_async(("x",), unique_key="c")
        await held.cancel()  # before any worker runs it: the worker reads it as it starts
        async with serving(own):
            with pytest.raises(TaskCancelledError):
                await held.get(timeout=10)

            async def freed() -> bool:
                return not (await task.apply_async(("y",), unique_key="c")).duplicate

            await eventually(freed)
        assert ran == []


async def test_the_key_travels_in_a_reserved_header(local: LocalWorker) -> None:
    await nightly.apply_async(("h",), unique_key="k", countdown=60)
    page = await app.broker.delayed_page("default")  # type: ignore[attr-defined]
    assert page.messages[0].headers[UNIQUE_HEADER] == "k"


async def test_delay_many_takes_one_unique_key_per_call(local: LocalWorker) -> None:
    await nightly.apply_async(("held",), unique_key="day-2", countdown=60)
    results = await nightly.delay_many(
        [("1",), ("2",), ("3",)], unique_keys=["day-1", "day-2", "day-3"]
    )
    assert [r.duplicate for r in results] == [False, True, False]
    await local.run_until_idle()
    assert sorted(runs) == ["1", "3", "held"]
    with pytest.raises(ConfigurationError, match="one non-empty key per call"):
        await nightly.delay_many([("1",), ("2",)], unique_keys=["only-one"])


def test_the_blocking_delay_many_takes_unique_keys() -> None:
    with BlockingLocalWorker(app) as local:
        first, again = nightly.blocking.delay_many(
            [("a",), ("b",)], unique_keys=["same", "same"], unique_for=60
        )
        assert (first.duplicate, again.duplicate) == (False, True)
        local.run_until_idle()
        assert runs == ["a"]


async def test_unique_needs_a_key(local: LocalWorker) -> None:
    with pytest.raises(ConfigurationError, match=r"task_id=\.\.\. .* or unique_key="):
        await nightly.apply_async(("1",), unique=True)
    with pytest.raises(ConfigurationError, match="1 to 255 printable characters"):
        await nightly.apply_async(("1",), unique_key="line\nbreak")
    with pytest.raises(ConfigurationError, match="unique_for must not be negative"):
        await nightly.apply_async(("1",), unique_key="k", unique_for=-1)


class _PlainBroker(MemoryBroker):
    """A broker that does not declare the capability."""

    @property
    def capabilities(self):  # type: ignore[no-untyped-def]
        return attrs.evolve(super().capabilities, unique_enqueue=False)


async def test_a_broker_without_the_capability_refuses_instead_of_enqueueing() -> None:
    plain = Chicory(_PlainBroker(), "memory://", load_entry_points=True)

    @plain.task(name="t")
    async def task() -> None: ...

    async with plain:
        with pytest.raises(CapabilityError, match="'unique_enqueue' capability"):
            await task.apply_async(unique_key="k")
        assert (await plain.broker.counts("default")).ready == 0


def test_the_blocking_api_tells_duplicates() -> None:
    with BlockingLocalWorker(app) as local:
        first = nightly.blocking.apply_async(
            ("b",), task_id="blocking:1", unique=True, countdown=60
        )
        again = nightly.blocking.apply_async(("b",), task_id="blocking:1", unique=True)
        assert (first.duplicate, again.duplicate) == (False, True)
        assert again.id == first.id
        local.run_until_idle()
        assert again.get(timeout=0) == "report b"


async def test_on_redis_concurrent_producers_enqueue_a_key_once_and_the_worker_frees_it() -> None:
    prefix = f"t-unique-{secrets.token_hex(4)}"
    url = f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    redis_app = Chicory(url, url, load_entry_points=True)
    ran: list[int] = []

    @redis_app.task(name="redis.unique")
    async def job(n: int) -> int:
        ran.append(n)
        return n

    async with redis_app:
        try:
            results = []

            async def produce(n: int) -> None:
                results.append(await job.apply_async((n,), unique_key="fire"))

            async with anyio.create_task_group() as group:
                for n in range(10):
                    group.start_soon(produce, n)
            assert sum(not r.duplicate for r in results) == 1
            assert len({r.id for r in results}) == 1
            broker = redis_app.broker
            assert isinstance(broker, RedisBroker)
            assert await broker.unique_holder("default", "fire") == results[0].id

            async def freed() -> bool:
                return await broker.unique_holder("default", "fire") is None

            async with serving(redis_app):
                assert await results[0].get(timeout=10) in range(10)
                await eventually(freed)
            assert len(ran) == 1
            again = await job.apply_async((99,), unique_key="fire")
            assert not again.duplicate
        finally:
            broker = redis_app.broker
            assert isinstance(broker, RedisBroker)
            await broker.delete_queue("default")
            keys = [key async for key in broker.client.scan_iter(match=f"{prefix}:*")]
            if keys:
                await broker.client.delete(*keys)
