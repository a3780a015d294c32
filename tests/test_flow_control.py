"""Rate limits, concurrency limits and priorities through the real worker, on memory://.

The fleet-wide checks (two worker processes sharing one Redis) are in
``test_flow_control_redis.py``.
"""

from __future__ import annotations

from typing import Any

import anyio
import attrs
import pytest

from chicory import Chicory, ConfigurationError, DeliveryMode, TaskContext
from chicory.errors import CapabilityError
from chicory.flow import RateLimit
from chicory.priority import PRIORITY_HEADER
from chicory_memory.broker import MemoryBroker
from e2e_support import eventually, serving


class PlainBroker(MemoryBroker):
    """A memory broker declaring neither flow control nor priorities."""

    @property
    def capabilities(self) -> Any:
        return attrs.evolve(super().capabilities, flow_control=False, priorities=False)


@pytest.mark.parametrize("mode", list(DeliveryMode))
async def test_a_rate_limited_task_waits_in_the_broker_not_in_a_slot(mode: DeliveryMode) -> None:
    """One runner, 2/s: the free tasks enqueued after five limited ones all run before the
    limited ones are done, each limited one runs once, and none is dead-lettered."""
    app = Chicory(broker="memory://")
    events: list[str] = []

    @app.task(name="f.limited", rate_limit="2/s", delivery_mode=mode)
    async def limited(n: int) -> int:
        events.append(f"limited {n}")
        return n

    @app.task(name="f.free")
    async def free(n: int) -> int:
        events.append(f"free {n}")
        return n

    slow = [await limited.delay(n) for n in range(5)]
    fast = [await free.delay(n) for n in range(4)]
    async with serving(app, concurrency=1, prefetch=0):
        assert [await r.get(timeout=10) for r in fast] == [0, 1, 2, 3]
        assert [await r.get(timeout=10) for r in slow] == [0, 1, 2, 3, 4]
    assert sorted(events) == sorted(
        [f"limited {n}" for n in range(5)] + [f"free {n}" for n in range(4)]
    )
    last_free = max(events.index(f"free {n}") for n in range(4))
    last_limited = max(events.index(f"limited {n}") for n in range(5))
    assert last_limited > last_free, f"a free task waited behind the limit: {events}"
    broker = await app.connected_broker()
    assert (await broker.counts("default")).dead == 0


async def test_waiting_for_a_turn_spends_no_attempt() -> None:
    """Tasks that waited for their turn run as their first attempt, with no retry history."""
    app = Chicory(broker="memory://")
    seen: list[tuple[int, int]] = []

    @app.task(name="f.rated", rate_limit="20/s")
    async def rated(ctx: TaskContext, n: int) -> None:
        seen.append((n, ctx.attempt))

    results = await rated.delay_many([(n,) for n in range(6)])
    async with serving(app, concurrency=4):
        for result in results:
            await result.get(timeout=10)
    assert sorted(seen) == [(n, 1) for n in range(6)]


async def test_a_concurrency_limit_is_never_exceeded_and_the_rest_keeps_running() -> None:
    """Limit 2 on a worker of 8 runners: never more than 2 at once, and both in use."""
    app = Chicory(broker="memory://")
    running = 0
    most = 0

    @app.task(name="f.capped", concurrency_limit=2)
    async def capped(n: int) -> int:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await anyio.sleep(0.05)
        running -= 1
        return n

    results = await capped.delay_many([(n,) for n in range(12)])
    async with serving(app, concurrency=8):
        assert [await r.get(timeout=20) for r in results] == list(range(12))
    assert most == 2, f"at most {most} ran at once with concurrency_limit=2"


async def test_a_killed_workers_permit_expires_with_its_lease() -> None:
    """The only permit is held by a worker that is killed mid-run: once its lease (and so
    its permit) expires, another worker runs the task."""
    app = Chicory(broker=MemoryBroker(lease_seconds=0.6))
    ran: list[str] = []
    gate = anyio.Event()

    @app.task(name="f.single", concurrency_limit=1)
    async def single(n: int) -> int:
        ran.append(f"start {n}")
        if n == 0 and len(ran) == 1:
            gate.set()
            await anyio.sleep(60)
        return n

    first = await single.delay(0)
    async with serving(app, lease_renew_interval=0.2) as doomed:
        await gate.wait()
        doomed.kill()
    async with serving(app):
        assert await first.get(timeout=10) == 0
    assert ran == ["start 0", "start 0"]


async def test_priorities_order_the_work_on_memory() -> None:
    app = Chicory(broker="memory://")
    order: list[str] = []

    @app.task(name="f.job")
    async def job(name: str) -> None:
        order.append(name)

    @app.task(name="f.urgent", priority=9)
    async def urgent(name: str) -> None:
        order.append(name)

    await job.delay("low")
    await job.apply_async(["mid"], priority=4)
    await urgent.delay("top")
    await job.apply_async(["also mid"], priority=4)
    last = await urgent.apply_async(["urgent but 1"], priority=1)
    async with serving(app, concurrency=1, prefetch=0):
        await last.get(timeout=5)
        await eventually(lambda: len(order) == 5)
    assert order == ["top", "mid", "also mid", "urgent but 1", "low"]


async def test_a_tasks_priority_travels_in_its_header() -> None:
    app = Chicory(broker="memory://")
    broker = await app.connected_broker()

    @app.task(name="f.flaky", priority=7)
    async def flaky() -> None: ...

    await flaky.delay()
    async with broker.consume(["default"], prefetch=1) as consumer:
        (delivery,) = await consumer.fetch(1, timeout=1)
        assert delivery.headers[PRIORITY_HEADER] == "7"


async def test_limits_and_priorities_are_refused_where_the_broker_lacks_them() -> None:
    app = Chicory(broker=PlainBroker())
    with pytest.raises(CapabilityError, match="flow_control"):
        app.task(name="f.a", rate_limit="1/s")(_noop)
    with pytest.raises(CapabilityError, match="flow_control"):
        app.task(name="f.b", concurrency_limit=1)(_noop)
    with pytest.raises(CapabilityError, match="priorities"):
        app.task(name="f.c", priority=1)(_noop)
    plain = app.task(name="f.d")(_noop)
    with pytest.raises(CapabilityError, match="priorities"):
        await plain.apply_async(priority=3)
    with pytest.raises(CapabilityError, match="priorities"):
        await plain.delay_many([()], priority=3)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"rate_limit": "fast"}, "not understood"),
        ({"rate_limit": "0/s"}, "at least one"),
        ({"concurrency_limit": 0}, "positive integer"),
        ({"concurrency_limit": 1.5}, "positive integer"),
        ({"priority": 10}, "from 0 to 9"),
        ({"priority": -1}, "from 0 to 9"),
    ],
)
def test_malformed_limits_say_what_to_write(options: dict[str, Any], match: str) -> None:
    app = Chicory(broker="memory://")
    with pytest.raises(ConfigurationError, match=match):
        app.task(name="f.bad", **options)(_noop)


def test_rate_limits_read_as_written() -> None:
    assert RateLimit.parse("100/s").interval == pytest.approx(0.01)
    assert RateLimit.parse("30/m").interval == pytest.approx(2.0)
    assert RateLimit.parse("5/10s").interval == pytest.approx(2.0)
    assert RateLimit.parse("2/h").interval == pytest.approx(1800.0)
    assert RateLimit.parse("1/d").interval == pytest.approx(86400.0)


async def _noop() -> None: ...


async def test_signed_messages_keep_their_signature_through_waits_and_priorities() -> None:
    """With a signing key: a priority header is signed with the message, and a message
    handed back to wait (for a turn, or for a permit with its wait count) still verifies."""
    app = Chicory(broker="memory://", signing_key="k" * 32)
    done: list[int] = []

    @app.task(name="f.signed", rate_limit="4/s", concurrency_limit=1, priority=3)
    async def signed(n: int) -> None:
        done.append(n)
        await anyio.sleep(0.02)

    results = await signed.delay_many([(n,) for n in range(6)])
    results.append(await signed.apply_async([6], priority=8))
    async with serving(app, concurrency=4):
        for result in results:
            await result.get(timeout=15)
    assert sorted(done) == list(range(7))
    broker = await app.connected_broker()
    assert (await broker.counts("default")).dead == 0


async def test_the_testkit_runs_rate_limited_work_on_its_virtual_clock() -> None:
    """LocalWorker moves its clock to each waiting turn: five starts at 1/min finish at
    once in real time, four minutes apart on the virtual clock."""
    from chicory.testkit import LocalWorker

    app = Chicory(broker="memory://")
    seen: list[float] = []

    @app.task(name="f.slow_api", rate_limit="1/m")
    async def slow_api(n: int) -> None:
        seen.append(local.clock.time())

    async with LocalWorker(app) as local:
        await slow_api.delay_many([(n,) for n in range(5)])
        await local.run_until_idle()
    assert len(seen) == 5
    assert seen[-1] - seen[0] >= 4 * 60 - 1
