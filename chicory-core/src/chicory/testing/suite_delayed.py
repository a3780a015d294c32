"""Delayed listing: the ``delayed_listing`` capability (:mod:`chicory.delayed`).

What ``chicory delayed list|remove`` and ``chicory cancel`` rely on: a queue's delayed
messages listed soonest first by page, and one removed so that it is never delivered.
"""

from __future__ import annotations

from datetime import timedelta

import anyio

from chicory.broker import Broker
from chicory.clock import utcnow
from chicory.delayed import DelayedListing
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import fetch_exactly, fetch_none, in_seconds

__all__ = ["DelayedSuite"]

MUST, SHOULD = Level.MUST, Level.SHOULD
DELAYED = ("delayed_delivery", "delayed_listing")


async def _listing(env: BrokerEnv) -> tuple[DelayedListing, Broker]:
    """The broker of the test, as both faces (one broker: a memory broker's state is its own)."""
    broker = await env.broker()
    assert isinstance(broker, DelayedListing), (
        f"{broker!r} declares the 'delayed_listing' capability but lacks one of its methods "
        "(delayed_page, remove_delayed)"
    )
    return broker, broker


class DelayedSuite:
    """Subclass with an empty body (``class TestDelayed(DelayedSuite): pass``)."""

    @guarantee("delayed.listed_soonest_first", MUST, env=BROKER_ENV, requires=DELAYED)
    async def test_listed_soonest_first(self, env: BrokerEnv) -> None:
        """MUST list only the delayed messages, soonest due first, as published."""
        listing, broker = await _listing(env)
        queue = env.queue()
        now = utcnow()
        await broker.publish(queue, b"ready now")
        for minutes in (30, 10, 20):
            due = now + timedelta(minutes=minutes)
            await broker.publish(
                queue, f"in {minutes}".encode(), {"m": str(minutes)}, not_before=due
            )
        page = await listing.delayed_page(queue)
        assert [m.body for m in page.messages] == [b"in 10", b"in 20", b"in 30"], page
        assert page.next_after is None
        tolerance = timedelta(seconds=env.harness.clock_tolerance + 0.01)
        for message, minutes in zip(page.messages, (10, 20, 30), strict=True):
            assert message.queue == queue
            assert dict(message.headers) == {"m": str(minutes)}
            assert message.due_at.tzinfo is not None, "due_at must be aware"
            expected = now + timedelta(minutes=minutes)
            assert abs(message.due_at - expected) <= tolerance, (message.due_at, expected)
        assert (await listing.delayed_page(env.queue("none"))).messages == []

    @guarantee("delayed.page_cursor", MUST, env=BROKER_ENV, requires=DELAYED)
    async def test_page_cursor(self, env: BrokerEnv) -> None:
        """MUST page from a cursor: each delayed message once, in order, None after the last."""
        listing, broker = await _listing(env)
        queue = env.queue()
        due = in_seconds(3600)
        sent = [f"same time {n}".encode() for n in range(3)]
        for body in sent:  # three share one due time: the id orders them
            await broker.publish(queue, body, not_before=due)
        await broker.publish(queue, b"later", not_before=in_seconds(7200))
        seen: list[bytes] = []
        after = None
        for _ in range(10):
            page = await listing.delayed_page(queue, after=after, limit=2)
            assert len(page.messages) <= 2, f"limit=2 but {len(page.messages)} came"
            seen += [m.body for m in page.messages]
            if page.next_after is None:
                break
            after = page.next_after
        assert sorted(seen[:3]) == sorted(sent), seen
        assert seen[3:] == [b"later"], seen

    @guarantee("delayed.remove", MUST, env=BROKER_ENV, requires=DELAYED)
    async def test_remove(self, env: BrokerEnv) -> None:
        """MUST remove one delayed message by id, once; False for an unknown id."""
        listing, broker = await _listing(env)
        queue = env.queue()
        for body in (b"keep", b"drop"):
            await broker.publish(queue, body, not_before=in_seconds(3600))
        drop = next(m for m in (await listing.delayed_page(queue)).messages if m.body == b"drop")
        other = env.queue("other")
        assert await listing.remove_delayed(other, drop.id) is False, "removed from another queue"
        assert await listing.remove_delayed(queue, drop.id) is True
        assert await listing.remove_delayed(queue, drop.id) is False, "removed twice"
        assert await listing.remove_delayed(queue, "no-such-message") is False
        assert [m.body for m in (await listing.delayed_page(queue)).messages] == [b"keep"]
        assert (await broker.counts(queue)).delayed == 1

    @guarantee("delayed.removed_never_delivered", MUST, env=BROKER_ENV, requires=DELAYED)
    async def test_removed_never_delivered(self, env: BrokerEnv) -> None:
        """MUST never deliver a removed delayed message, after its due time either."""
        listing, broker = await _listing(env)
        queue = env.queue()
        wait = 0.3 + env.harness.clock_tolerance
        await broker.publish(queue, b"removed", not_before=in_seconds(wait))
        await broker.publish(queue, b"delivered", not_before=in_seconds(wait))
        (removed,) = [
            m for m in (await listing.delayed_page(queue)).messages if m.body == b"removed"
        ]
        assert await listing.remove_delayed(queue, removed.id) is True
        await anyio.sleep(wait + 0.1)
        async with broker.consume([queue], prefetch=5) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            assert delivery.body == b"delivered"
            await delivery.ack()
            await fetch_none(consumer, what="after removing a delayed message")

    @guarantee("delayed.due_not_listed", SHOULD, env=BROKER_ENV, requires=DELAYED)
    async def test_due_not_listed(self, env: BrokerEnv) -> None:
        """SHOULD not list, nor remove, a message once delivered after its due time."""
        listing, broker = await _listing(env)
        queue = env.queue()
        wait = 0.2 + env.harness.clock_tolerance
        await broker.publish(queue, b"soon", not_before=in_seconds(wait))
        (message,) = (await listing.delayed_page(queue)).messages
        await anyio.sleep(wait + 0.1)
        async with broker.consume([queue], prefetch=1) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            assert (await listing.delayed_page(queue)).messages == []
            assert await listing.remove_delayed(queue, message.id) is False
            await delivery.ack()
