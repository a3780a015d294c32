"""A clock moved forward by a test: what falls due is found, and sleeping fetches wake."""

from __future__ import annotations

from datetime import UTC, datetime

import anyio

from chicory.clock import ManualClock
from chicory_memory.broker import MemoryBroker


def at(clock: ManualClock, seconds: float) -> datetime:
    return datetime.fromtimestamp(clock.time() + seconds, UTC)


async def test_next_due_is_the_earliest_delayed_message(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    assert broker.next_due(["q"]) is None
    await broker.publish("q", b"late", not_before=at(clock, 300))
    await broker.publish("other", b"soon", not_before=at(clock, 60))
    await broker.publish("q", b"ready now")
    assert broker.next_due(["q"]) == clock.time() + 300
    assert broker.next_due(["q", "other", "unknown"]) == clock.time() + 60


async def test_counting_after_the_clock_moved_wakes_a_sleeping_fetch(
    broker: MemoryBroker, clock: ManualClock
) -> None:
    """A fetch that went to sleep until an hour from now (on the clock) gets the message as
    soon as the clock is moved and the queue looked at, not an hour of real time later."""
    await broker.publish("q", b"delayed", not_before=at(clock, 3600))
    got: list[bytes] = []
    fetched = anyio.Event()
    async with broker.consume(["q"], prefetch=1) as consumer:

        async def fetch() -> None:
            got.extend(d.body for d in await consumer.fetch(1, timeout=30))
            fetched.set()

        async with anyio.create_task_group() as group:
            group.start_soon(fetch)
            await anyio.sleep(0.05)  # the fetch is asleep now
            clock.advance(3600)
            await broker.counts("q")
            with anyio.fail_after(5):
                await fetched.wait()
    assert got == [b"delayed"]
