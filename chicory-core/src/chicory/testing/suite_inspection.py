"""Inspection: the operators' operations of ``Capabilities(inspection=True)``.

What ``chicory queues``, ``chicory dead ...`` and the dashboard rely on: listing queues,
stats of many queues at once, dead letters by page (cursor, order, time range), one dead
letter by id, and the atomic swap of a dead letter for a new message that a replay uses.
"""

from __future__ import annotations

from datetime import timedelta

import anyio

from chicory.broker import Broker
from chicory.clock import utcnow
from chicory.errors import MessageTooLargeError
from chicory.inspection import InspectableBroker
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import BROKER_ENV, BrokerEnv
from chicory.testing.helpers import fetch_exactly, fetch_none

__all__ = ["InspectionSuite"]

MUST, SHOULD = Level.MUST, Level.SHOULD
INSPECTION = ("inspection",)
DEAD_AND_INSPECTION = ("dead_letter", "inspection")


async def _inspectable(env: BrokerEnv) -> InspectableBroker:
    broker = await env.broker()
    assert isinstance(broker, InspectableBroker), (
        f"{broker!r} declares the 'inspection' capability but lacks one of its methods "
        "(queues, queue_stats, dead_letter_page, get_dead_letter, requeue_dead_letter)"
    )
    return broker


async def _bury(broker: Broker, queue: str, count: int, *, pause: float = 0.0) -> list[bytes]:
    """Dead-letter ``count`` new messages of ``queue``, in order, ``pause`` s apart."""
    bodies = [f"dead-{n}".encode() for n in range(count)]
    for body in bodies:
        await broker.publish(queue, body, {"n": body.decode()})
    async with broker.consume([queue], prefetch=count) as consumer:
        for delivery in sorted(await fetch_exactly(consumer, count), key=lambda d: d.body):
            await delivery.dead_letter(f"reason of {delivery.body.decode()}")
            if pause:
                await anyio.sleep(pause)
    return bodies


class InspectionSuite:
    """Subclass with an empty body (``class TestInspection(InspectionSuite): pass``)."""

    @guarantee("inspection.queues_listed", MUST, env=BROKER_ENV, requires=INSPECTION)
    async def test_queues_listed(self, env: BrokerEnv) -> None:
        """MUST list a queue once published to or consumed, sorted, each name once."""
        broker = await _inspectable(env)
        published, consumed = env.queue("published"), env.queue("consumed")
        await broker.publish(published, b"x")
        await broker.publish(published, b"y")
        async with broker.consume([consumed], prefetch=1) as consumer:
            await fetch_none(consumer, wait=0.05)
        names = await broker.queues()
        assert names == sorted(names), f"not sorted: {names}"
        assert len(names) == len(set(names)), f"listed twice: {names}"
        assert published in names, f"{published} was published to but is not listed: {names}"
        assert consumed in names, f"{consumed} was consumed but is not listed: {names}"

    @guarantee("inspection.queue_stats", MUST, env=BROKER_ENV, requires=INSPECTION)
    async def test_queue_stats(self, env: BrokerEnv) -> None:
        """MUST report ready, in-flight, delayed and dead counts of each queue asked, in order."""
        broker = await _inspectable(env)
        busy, idle, unknown = env.queue("busy"), env.queue("idle"), env.queue("never")
        for n in range(3):
            await broker.publish(busy, f"m{n}".encode())
        if env.capabilities.delayed_delivery:
            await broker.publish(busy, b"later", not_before=utcnow() + timedelta(hours=1))
        if env.capabilities.dead_letter:
            await _bury(broker, idle, 2)
        async with broker.consume([busy], prefetch=1) as consumer:
            await fetch_exactly(consumer, 1)
            stats = await broker.queue_stats([unknown, busy, idle])
            assert [s.queue for s in stats] == [unknown, busy, idle], "not in the order asked"
            never, b, i = stats
            assert (never.ready, never.in_flight, never.delayed, never.dead) == (0, 0, 0, 0), (
                f"a queue never used must count nothing; the broker reports {never}"
            )
            assert (b.ready, b.in_flight) == (2, 1), f"expected ready=2, in_flight=1; got {b}"
            delayed = 1 if env.capabilities.delayed_delivery else 0
            assert b.delayed == delayed, f"expected delayed={delayed}; got {b}"
            dead = 2 if env.capabilities.dead_letter else 0
            assert i.dead == dead, f"expected dead={dead}; got {i}"

    @guarantee("inspection.consumers", SHOULD, env=BROKER_ENV, requires=INSPECTION)
    async def test_consumers(self, env: BrokerEnv) -> None:
        """SHOULD count the live consumers of a queue, and one fewer once one closed."""
        broker = await _inspectable(env)
        queue = env.queue()
        first = broker.consume([queue], prefetch=1)
        second = broker.consume([queue, env.queue("other")], prefetch=1)
        for consumer in (first, second):
            await fetch_none(consumer, wait=0.05)
        (both,) = await broker.queue_stats([queue])
        assert both.consumers == 2, f"two consumers are open, the broker counts {both.consumers}"
        await first.close()
        (one,) = await broker.queue_stats([queue])
        await second.close()
        assert one.consumers == 1, f"one consumer is open, the broker counts {one.consumers}"

    @guarantee("inspection.oldest_ready", SHOULD, env=BROKER_ENV, requires=INSPECTION)
    async def test_oldest_ready(self, env: BrokerEnv) -> None:
        """SHOULD tell when the oldest ready message became ready, and None when none is."""
        broker = await _inspectable(env)
        queue = env.queue()
        (empty,) = await broker.queue_stats([queue])
        assert empty.oldest_ready_at is None, (
            f"an empty queue has no oldest ready message; the broker reports {empty}"
        )
        tolerance = timedelta(seconds=env.harness.clock_tolerance)
        before = utcnow() - tolerance
        await broker.publish(queue, b"first")
        after = utcnow() + tolerance
        await anyio.sleep(2 * env.harness.clock_tolerance + 0.05)
        await broker.publish(queue, b"second")
        (stats,) = await broker.queue_stats([queue])
        oldest = stats.oldest_ready_at
        assert oldest is not None, "two messages are ready, but no oldest time is reported"
        assert oldest.tzinfo is not None, "oldest_ready_at must be an aware datetime"
        assert before <= oldest <= after, (
            f"the first message became ready between {before} and {after}, reported {oldest}"
        )

    @guarantee("inspection.page_cursor", MUST, env=BROKER_ENV, requires=DEAD_AND_INSPECTION)
    async def test_page_cursor(self, env: BrokerEnv) -> None:
        """MUST page dead letters oldest first from a cursor: each once, None after the last."""
        broker = await _inspectable(env)
        queue = env.queue()
        sent = await _bury(broker, queue, 5)
        seen: list[bytes] = []
        after = None
        for _ in range(10):
            page = await broker.dead_letter_page(queue, after=after, limit=2)
            assert len(page.letters) <= 2, f"limit=2 but {len(page.letters)} letters came"
            seen += [letter.body for letter in page.letters]
            if page.next_after is None:
                break
            after = page.next_after
        assert seen == sent, f"expected {sent} in order, each once; got {seen}"
        none = (await broker.dead_letter_page(env.queue("none"))).letters
        assert none == [], f"a queue without dead letters paged {len(none)}"

    @guarantee("inspection.page_newest_first", MUST, env=BROKER_ENV, requires=DEAD_AND_INSPECTION)
    async def test_page_newest_first(self, env: BrokerEnv) -> None:
        """MUST page dead letters newest first when asked, from a cursor too."""
        broker = await _inspectable(env)
        queue = env.queue()
        sent = await _bury(broker, queue, 4)
        first = await broker.dead_letter_page(queue, limit=3, newest_first=True)
        assert first.next_after is not None, "one letter is left, but no cursor came"
        rest = await broker.dead_letter_page(
            queue, after=first.next_after, limit=3, newest_first=True
        )
        got = [letter.body for letter in [*first.letters, *rest.letters]]
        assert got == sent[::-1], f"expected {sent[::-1]}, got {got}"
        assert rest.next_after is None, "the last page still gave a cursor"

    @guarantee("inspection.page_time_range", MUST, env=BROKER_ENV, requires=DEAD_AND_INSPECTION)
    async def test_page_time_range(self, env: BrokerEnv) -> None:
        """MUST select dead letters by time: since included, until excluded, by dead_at."""
        broker = await _inspectable(env)
        queue = env.queue()
        await _bury(broker, queue, 3, pause=0.05)
        a, b, c = (await broker.dead_letter_page(queue)).letters
        window = await broker.dead_letter_page(queue, since=b.dead_at, until=c.dead_at)
        assert [letter.body for letter in window.letters] == [b.body], (
            f"since={b.dead_at} until={c.dead_at} must select only {b.body!r}; got "
            f"{[letter.body for letter in window.letters]}"
        )
        later = await broker.dead_letter_page(queue, since=b.dead_at, newest_first=True)
        got = [letter.body for letter in later.letters]
        assert got == [c.body, b.body], f"expected {[c.body, b.body]} newest first; got {got}"
        assert a.dead_at < b.dead_at < c.dead_at, "dead_at of letters buried in turn do not grow"

    @guarantee("inspection.get_dead_letter", MUST, env=BROKER_ENV, requires=DEAD_AND_INSPECTION)
    async def test_get_dead_letter(self, env: BrokerEnv) -> None:
        """MUST return one dead letter by id, as listed, and None for an unknown id."""
        broker = await _inspectable(env)
        queue = env.queue()
        await _bury(broker, queue, 2)
        listed = await broker.dead_letters(queue)
        for letter in listed:
            found = await broker.get_dead_letter(queue, letter.id)
            assert found == letter, f"expected {letter}, got {found}"
        await broker.delete_dead_letter(queue, listed[0].id)
        assert await broker.get_dead_letter(queue, listed[0].id) is None, (
            "a deleted dead letter is still returned"
        )
        assert await broker.get_dead_letter(env.queue("other"), listed[1].id) is None, (
            "a dead letter is returned for a queue it does not belong to"
        )

    @guarantee("inspection.requeue_dead_letter", MUST, env=BROKER_ENV, requires=DEAD_AND_INSPECTION)
    async def test_requeue_dead_letter(self, env: BrokerEnv) -> None:
        """MUST swap a dead letter for a new message with the given body and headers, once."""
        broker = await _inspectable(env)
        queue = env.queue()
        await _bury(broker, queue, 1)
        (letter,) = await broker.dead_letters(queue)
        headers = {"chicory-history": "[]", "h": "v"}
        assert await broker.requeue_dead_letter(queue, letter.id, b"rewritten", headers) is True, (
            "requeue_dead_letter of a listed dead letter did not return True"
        )
        assert await broker.dead_letters(queue) == [], "the dead letter is still there"
        assert await broker.requeue_dead_letter(queue, letter.id, b"again", {}) is False, (
            "a dead letter was requeued twice"
        )
        async with broker.consume([queue], prefetch=2) as consumer:
            (delivery,) = await fetch_exactly(consumer, 1)
            seen = (delivery.body, dict(delivery.headers))
            assert seen == (b"rewritten", headers), f"the requeued message came back as {seen}"
            assert delivery.delivery_count == 1, "a requeued message starts a fresh count"
            await delivery.ack()
            await fetch_none(consumer, what="after the one requeued message")
        limit = env.capabilities.max_body_bytes
        if limit is not None:
            await _bury(broker, queue, 1)
            (kept,) = await broker.dead_letters(queue)
            try:
                await broker.requeue_dead_letter(queue, kept.id, b"x" * (limit + 1), {})
            except MessageTooLargeError:
                pass
            else:
                raise AssertionError("a body over max_body_bytes was accepted")
            left = [d.id for d in await broker.dead_letters(queue)]
            assert left == [kept.id], f"a refused requeue changed the dead letters: {left}"
