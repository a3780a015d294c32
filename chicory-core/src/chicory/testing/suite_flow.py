"""Flow control and priorities: the ``flow_control`` and ``priorities`` capabilities.

What rate limits, concurrency limits (:mod:`chicory.flow`) and priorities
(:mod:`chicory.priority`) rely on: turns spaced by their interval and reserved for the
holder that came early, permits that never exceed their limit and expire unless renewed,
all shared by every connection; ready messages served highest priority first.
"""

from __future__ import annotations

import anyio

from chicory.broker import Broker
from chicory.flow import FlowControl
from chicory.priority import PRIORITY_HEADER
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import fetch_exactly, in_seconds

__all__ = ["FlowControlSuite"]

MUST, SHOULD = Level.MUST, Level.SHOULD
FLOW = ("flow_control",)
PRIORITIES = ("priorities",)


async def _flow(env: BrokerEnv) -> FlowControl:
    broker = await env.broker()
    assert isinstance(broker, FlowControl), (
        f"{broker!r} declares the 'flow_control' capability but lacks one of its methods "
        "(take_turn, acquire_permit, renew_permits, release_permit)"
    )
    return broker


def _near(value: float, expected: float, env: BrokerEnv, what: str) -> None:
    slack = env.harness.clock_tolerance + 0.05
    assert expected - slack <= value <= expected + slack, (
        f"{what}: expected about {expected:.3f} s, the broker said {value:.3f} s"
    )


async def _drain(broker: Broker, queue: str, count: int) -> list[bytes]:
    async with broker.consume([queue], prefetch=count) as consumer:
        deliveries = await fetch_exactly(consumer, count)
        for delivery in deliveries:
            await delivery.ack()
        return [delivery.body for delivery in deliveries]


class FlowControlSuite:
    """Subclass with an empty body (``class TestFlow(FlowControlSuite): pass``)."""

    @guarantee("flow.turns_spaced", MUST, env=BROKER_ENV, requires=FLOW)
    async def test_turns_spaced(self, env: BrokerEnv) -> None:
        """MUST grant a free start at once and reserve later turns one interval apart."""
        flow = await _flow(env)
        key = env.queue("rate")
        assert await flow.take_turn(key, "a", limit=1, period=1.0) == 0.0, (
            "the first start must be free"
        )
        _near(await flow.take_turn(key, "b", limit=1, period=1.0), 1.0, env, "b's turn")
        _near(await flow.take_turn(key, "c", limit=1, period=1.0), 2.0, env, "c's turn, after b's")
        _near(await flow.take_turn(key, "b", limit=1, period=1.0), 1.0, env, "b asking again early")
        _near(await flow.take_turn(key, "d", limit=1, period=1.0), 3.0, env, "d's turn, after c's")

    @guarantee(
        "flow.turn_kept", MUST, env=BROKER_ENV, requires=FLOW, rests_on=["flow.turns_spaced"]
    )
    async def test_turn_kept(self, env: BrokerEnv) -> None:
        """MUST give a holder its reserved turn once due, once, and not to a newcomer."""
        flow = await _flow(env)
        key = env.queue("rate")
        interval = 0.3 + env.harness.clock_tolerance
        assert await flow.take_turn(key, "a", limit=1, period=interval) == 0.0
        wait = await flow.take_turn(key, "b", limit=1, period=interval)
        assert wait > 0, "a second start within the interval must wait"
        await anyio.sleep(wait + 0.05)
        newcomer = await flow.take_turn(key, "c", limit=1, period=interval)
        assert newcomer > 0, "a newcomer took the turn reserved for b"
        assert await flow.take_turn(key, "b", limit=1, period=interval) == 0.0, (
            "b's due turn refused"
        )
        again = await flow.take_turn(key, "b", limit=1, period=interval)
        assert again > 0, "b used its one reserved turn twice"

    @guarantee("flow.window", MUST, env=BROKER_ENV, requires=FLOW)
    async def test_window(self, env: BrokerEnv) -> None:
        """MUST start up to ``limit`` at once, then give turns from when the window frees
        a start, ``period / limit`` apart."""
        flow = await _flow(env)
        key = env.queue("rate")
        for holder in "abc":
            assert await flow.take_turn(key, holder, limit=3, period=60.0) == 0.0, (
                f"start {holder} of 3 allowed in the window was refused"
            )
        _near(await flow.take_turn(key, "d", limit=3, period=60.0), 60.0, env, "d's turn")
        _near(await flow.take_turn(key, "e", limit=3, period=60.0), 80.0, env, "e's turn")

    @guarantee(
        "flow.window_never_exceeded",
        MUST,
        env=BROKER_ENV,
        requires=FLOW,
        rests_on=["flow.turn_kept"],
    )
    async def test_window_never_exceeded(self, env: BrokerEnv) -> None:
        """MUST refuse a due turn when the window is full (its holder came back late), and
        give it a new turn at the end of the line, once the window frees a start."""
        flow = await _flow(env)
        key = env.queue("rate")
        period = 0.3 + env.harness.clock_tolerance
        assert await flow.take_turn(key, "a", limit=1, period=period) == 0.0
        first = await flow.take_turn(key, "late", limit=1, period=period)
        second = await flow.take_turn(key, "prompt", limit=1, period=period)
        assert 0 < first < second, (first, second)
        await anyio.sleep(second + 0.05)
        assert await flow.take_turn(key, "prompt", limit=1, period=period) == 0.0
        again = await flow.take_turn(key, "late", limit=1, period=period)
        assert again > 0, "a late turn started in a full window: two starts in one period"
        _near(again, period, env, "the late holder's new turn, when the window frees")

    @guarantee("flow.turns_per_key", MUST, env=BROKER_ENV, requires=FLOW)
    async def test_turns_per_key(self, env: BrokerEnv) -> None:
        """MUST keep the turns of each key apart."""
        flow = await _flow(env)
        first, second = env.queue("rate-1"), env.queue("rate-2")
        assert await flow.take_turn(first, "a", limit=1, period=60.0) == 0.0
        assert await flow.take_turn(second, "a", limit=1, period=60.0) == 0.0, "keys share turns"

    @guarantee("flow.permits_limit", MUST, env=BROKER_ENV, requires=FLOW)
    async def test_permits_limit(self, env: BrokerEnv) -> None:
        """MUST grant at most ``limit`` permits at once; a release frees one; a holder
        asking again keeps its permit."""
        flow = await _flow(env)
        key = env.queue("permits")
        assert await flow.acquire_permit(key, "a", limit=2, ttl=60)
        assert await flow.acquire_permit(key, "b", limit=2, ttl=60)
        assert not await flow.acquire_permit(key, "c", limit=2, ttl=60), "a third permit of 2"
        assert await flow.acquire_permit(key, "a", limit=2, ttl=60), "a holder was refused"
        assert not await flow.acquire_permit(key, "c", limit=2, ttl=60), "a re-ask freed one"
        await flow.release_permit(key, "a")
        await flow.release_permit(key, "a")  # twice: nothing more
        assert await flow.acquire_permit(key, "c", limit=2, ttl=60), "a release freed nothing"
        assert not await flow.acquire_permit(key, "d", limit=2, ttl=60), (
            "a double release freed two"
        )
        other = env.queue("permits-other")
        assert await flow.acquire_permit(other, "d", limit=1, ttl=60), "keys share permits"

    @guarantee(
        "flow.permits_expire", MUST, env=BROKER_ENV, requires=FLOW, rests_on=["flow.permits_limit"]
    )
    async def test_permits_expire(self, env: BrokerEnv) -> None:
        """MUST free a permit whose ttl passed unrenewed, and keep a renewed one."""
        flow = await _flow(env)
        key = env.queue("permits")
        ttl = 1.0 + 2 * env.harness.clock_tolerance
        assert await flow.acquire_permit(key, "kept", limit=2, ttl=ttl)
        assert await flow.acquire_permit(key, "lost", limit=2, ttl=ttl)
        await anyio.sleep(ttl * 0.6)
        await flow.renew_permits(key, ["kept"], ttl=ttl)
        await anyio.sleep(ttl * 0.6)
        assert await flow.acquire_permit(key, "new", limit=2, ttl=ttl), "an expired permit held"
        assert not await flow.acquire_permit(key, "more", limit=2, ttl=ttl), (
            "a renewed permit expired with its first ttl"
        )
        await flow.release_permit(key, "new")
        await flow.renew_permits(key, ["new"], ttl=ttl)
        assert await flow.acquire_permit(key, "more", limit=2, ttl=ttl), (
            "renewing a released permit took it back"
        )

    @guarantee("flow.shared", MUST, env=BROKER_ENV, requires=("flow_control", "shared"))
    async def test_shared(self, env: BrokerEnv) -> None:
        """MUST share turns and permits between two brokers built alike (two processes)."""
        first = await _flow(env)
        second = await _flow(env)
        key = env.queue("shared")
        assert await first.acquire_permit(key, "a", limit=1, ttl=60)
        assert not await second.acquire_permit(key, "b", limit=1, ttl=60), "permits not shared"
        assert await first.take_turn(key, "a", limit=1, period=60.0) == 0.0
        assert await second.take_turn(key, "b", limit=1, period=60.0) > 0, "turns not shared"

    @guarantee("priority.highest_first", MUST, env=BROKER_ENV, requires=PRIORITIES)
    async def test_highest_first(self, env: BrokerEnv) -> None:
        """MUST deliver ready messages highest priority first, in publish order within one
        priority, a message without the header counting as 0."""
        broker = await env.broker()
        queue = env.queue()
        for body, priority in (
            (b"a0", "0"),
            (b"b5", "5"),
            (b"c9", "9"),
            (b"d-", None),
            (b"e5", "5"),
            (b"f1", "1"),
        ):
            await broker.publish(queue, body, {PRIORITY_HEADER: priority} if priority else {})
        assert await _drain(broker, queue, 6) == [b"c9", b"b5", b"e5", b"f1", b"a0", b"d-"]

    @guarantee(
        "priority.requeued_and_due",
        MUST,
        env=BROKER_ENV,
        requires=("priorities", "delayed_delivery"),
        rests_on=["priority.highest_first"],
    )
    async def test_requeued_and_due(self, env: BrokerEnv) -> None:
        """MUST keep a message's priority when it is requeued and when it falls due."""
        broker = await env.broker()
        queue = env.queue()
        wait = 0.2 + env.harness.clock_tolerance
        await broker.publish(queue, b"late9", {PRIORITY_HEADER: "9"}, not_before=in_seconds(wait))
        await broker.publish(queue, b"plain")
        await broker.publish(queue, b"high7", {PRIORITY_HEADER: "7"})
        async with broker.consume([queue], prefetch=1) as consumer:
            (first,) = await fetch_exactly(consumer, 1)
            assert first.body == b"high7", f"expected the priority 7 message, got {first.body!r}"
            await first.nack(requeue=True)
        await anyio.sleep(wait + 0.1)
        assert await _drain(broker, queue, 3) == [b"late9", b"high7", b"plain"]

    @guarantee("priority.no_header_fifo", SHOULD, env=BROKER_ENV, requires=PRIORITIES)
    async def test_no_header_fifo(self, env: BrokerEnv) -> None:
        """SHOULD keep messages without priorities in publish order, however many."""
        broker = await env.broker()
        queue = env.queue()
        bodies = [f"m{n}".encode() for n in range(20)]
        for body in bodies:
            await broker.publish(queue, body)
        assert await _drain(broker, queue, 20) == bodies
