"""The settler's pre-run acks, on the memory broker: what each waiting runner learns."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from chicory.broker import Consumer, Delivery
from chicory.clock import ManualClock
from chicory.worker.settler import Settler
from chicory_memory import MemoryBroker, MemoryResultBackend


class _Gate:
    """Holds the settler's next flush back while closed (through its ``filling`` hook)."""

    def __init__(self) -> None:
        self.closed = True

    def __call__(self) -> bool:
        return self.closed


@asynccontextmanager
async def _running(consumer: Consumer, gate: _Gate) -> AsyncIterator[Settler]:
    """A settler whose flusher runs while the block runs, flushing once ``gate`` opens;
    never quiet, so runners always wait for the flusher (the path every runner takes
    under load)."""
    settler = Settler(
        consumer,
        MemoryResultBackend(),
        result_ttl=60,
        settle_timeout=5,
        on_settled=lambda count: None,
        filling=gate,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(settler.run)
        yield settler
        settler.close()


async def _turns(count: int = 5) -> None:
    for _ in range(count):
        await anyio.lowlevel.checkpoint()


async def _fetched(broker: MemoryBroker, consumer: Consumer, count: int) -> list[Delivery]:
    for n in range(count):
        await broker.publish("q", f"m{n}".encode(), {})
    return list(await consumer.fetch(count, timeout=1))


async def test_a_cancelled_waiter_leaves_the_others_of_its_batch_waiting_for_the_flush() -> None:
    """Runners cancelled while their ack waits (a drain that ran out of time) do not disturb
    the rest of the batch, and their deliveries are acked anyway: at most once, they may be
    lost, never run twice."""
    async with MemoryBroker() as broker, broker.consume(["q"], prefetch=3) as consumer:
        first, second, third = await _fetched(broker, consumer, 3)
        outcomes: dict[str, bool] = {}
        scopes: list[anyio.CancelScope] = []

        async def run(name: str, delivery: Delivery, settler: Settler) -> None:
            with anyio.CancelScope() as scope:
                scopes.append(scope)
                outcomes[name] = await settler.ack_before_run(delivery)

        gate = _Gate()
        async with _running(consumer, gate) as settler, anyio.create_task_group() as runners:
            for name, delivery in (("first", first), ("second", second), ("third", third)):
                runners.start_soon(run, name, delivery, settler)
            await _turns()
            assert len(scopes) == 3  # all three wait for one flush
            assert not outcomes
            scopes[1].cancel()
            await _turns()
            gate.closed = False
        assert outcomes == {"first": True, "third": True}
        assert (await broker.counts("q")).in_flight == 0


async def test_only_the_runner_whose_lease_was_lost_learns_its_ack_failed() -> None:
    """One delivery of a batch lapsed and was taken by another consumer: its runner gets
    False (so its at-most-once task is not run), the others of the batch get True."""
    clock = ManualClock()
    async with (
        MemoryBroker(lease_seconds=10, clock=clock) as broker,
        broker.consume(["q"], prefetch=2) as consumer,
    ):
        await broker.publish("q", b"lapsed", {})
        (lapsed,) = await consumer.fetch(1, timeout=1)
        clock.advance(11)  # its lease expires; another consumer takes it
        async with broker.consume(["q"], prefetch=1) as thief:
            assert len(await thief.fetch(1, timeout=1)) == 1
            (fresh,) = await _fetched(broker, consumer, 1)
            outcomes: dict[bytes, bool] = {}

            async def run(delivery: Delivery, settler: Settler) -> None:
                outcomes[delivery.body] = await settler.ack_before_run(delivery)

            gate = _Gate()
            async with _running(consumer, gate) as settler, anyio.create_task_group() as tg:
                tg.start_soon(run, lapsed, settler)
                tg.start_soon(run, fresh, settler)
                await _turns()
                gate.closed = False
            assert outcomes == {b"lapsed": False, b"m0": True}
            assert (await broker.counts("q")).in_flight == 1  # the thief's, untouched
