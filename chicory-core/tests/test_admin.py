"""The admin API on its own: paging across queues, filters, replays, brokers without the
inspection capability, and the history header it writes."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import anyio
import pytest

from chicory import Chicory
from chicory.admin import Admin, DeadLetterFilter
from chicory.broker import Capabilities
from chicory.clock import ManualClock
from chicory.envelope import SIGNATURE_HEADER
from chicory.errors import CapabilityError, ConfigurationError
from chicory.history import HISTORY_HEADER, HistoryEntry, read_history, split_reason, with_history
from chicory_memory.broker import MemoryBroker

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def bury(app: Chicory, queue: str, task: str, count: int, clock: ManualClock) -> None:
    """Dead-letter ``count`` messages of ``task`` on ``queue``, one clock second apart."""
    broker = await app.connected_broker()
    for n in range(count):
        body, headers = app.codec.encode_fields(
            f"{queue}-{task}-{n}", task, [n], {}, queue=queue, created_at=_now(clock)
        )
        await broker.publish(queue, body, headers)
    async with broker.consume([queue], prefetch=count) as consumer:
        got: list[Any] = []
        while len(got) < count:
            got += await consumer.fetch(count, timeout=1)
        for delivery in got:
            clock.advance(1)
            await delivery.dead_letter(f"{task} failed\n\n--- traceback ---\nValueError: {task}")


def _now(clock: ManualClock) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(clock.time(), UTC)


def memory_app(clock: ManualClock, **options: Any) -> Chicory:
    return Chicory(MemoryBroker(clock=clock), **options)


async def test_pages_across_queues_are_merged_by_time_and_cover_each_letter_once() -> None:
    clock = ManualClock()
    app = memory_app(clock)
    rng = random.Random(7)
    expected = 0
    for _ in range(12):  # interleave the queues' dead letters in time
        queue = rng.choice(["a", "b", "c"])
        count = rng.randint(1, 4)
        await bury(app, queue, f"t.{queue}", count, clock)
        expected += count
    admin = Admin(app)
    for newest_first in (False, True):
        seen = []
        cursor = None
        for limit in [rng.randint(1, 5) for _ in range(100)]:
            page = await admin.dead_letters(cursor=cursor, limit=limit, newest_first=newest_first)
            assert len(page.letters) <= limit
            seen += page.letters
            cursor = page.cursor
            if cursor is None:
                break
        assert len(seen) == expected
        assert len({(info.queue, info.id) for info in seen}) == expected
        times = [info.dead_at for info in seen]
        assert times == sorted(times, reverse=newest_first), "merged by time across pages"
    await app.close()


async def test_filters_read_bodies_and_short_pages_keep_their_place() -> None:
    clock = ManualClock()
    app = memory_app(clock)
    await bury(app, "q", "noise", 30, clock)
    await bury(app, "q", "wanted", 2, clock)
    await bury(app, "q", "noise", 30, clock)
    await bury(app, "q", "wanted", 1, clock)
    admin = Admin(app, scan_limit=10)
    found = []
    pages = 0
    cursor = None
    while True:
        page = await admin.dead_letters(DeadLetterFilter(task="want*"), cursor=cursor, limit=5)
        pages += 1
        assert page.scanned <= 10, "one page reads at most scan_limit letters per queue"
        found += [info.task_id for info in page.letters]
        cursor = page.cursor
        if cursor is None:
            break
    assert found == ["q-wanted-0", "q-wanted-1", "q-wanted-0"]
    assert pages >= 7, "a filter matching little pages through, never reading all at once"
    by_reason = await admin.select(DeadLetterFilter(reason="VALUEERROR: WANTED"))
    assert len(by_reason) == 3
    since = _now(clock) - timedelta(seconds=30.5)  # the last 31, one second apart
    recent = await admin.select(DeadLetterFilter(since=since))
    assert len(recent) == 31
    with pytest.raises(ConfigurationError, match="not a dead-letter cursor"):
        await admin.dead_letters(cursor="garbage!")
    await app.close()


async def test_a_replay_restarts_the_attempt_and_keeps_the_history() -> None:
    clock = ManualClock()
    app = memory_app(clock, signing_key="k1")
    broker = await app.connected_broker()
    body, headers = app.codec.encode_fields(
        "t-1",
        "t.pay",
        [1],
        {},
        queue="q",
        created_at=_now(clock),
        attempt=4,
        headers={"user-header": "kept"},  # signed with the body
    )
    earlier = HistoryEntry(at=_now(clock), event="retry", attempt=3, detail="ValueError: x")
    await broker.publish("q", body, with_history(headers, earlier))
    async with broker.consume(["q"], prefetch=1) as consumer:
        (delivery,) = await consumer.fetch(1, timeout=1)
        await delivery.dead_letter("ValueError: x (retries exhausted after 4 attempts)")
    admin = Admin(app, actor="ops@example")
    (ref,) = await admin.select()
    report = await admin.replay([ref])
    assert (report.done, report.task_ids) == (1, ["t-1"])
    async with broker.consume(["q"], prefetch=1) as consumer:
        (delivery,) = await consumer.fetch(1, timeout=1)
        message = app.codec.decode(delivery.body, delivery.headers)  # signed anew
        assert (message.id, message.attempt) == ("t-1", 1)
        assert delivery.headers["user-header"] == "kept"
        events = [(e.event, e.attempt) for e in read_history(delivery.headers)]
        assert events == [("retry", 3), ("dead", 4), ("replay", 4)]
        assert read_history(delivery.headers)[-1].detail == "by ops@example"
        await delivery.ack()
    await app.close()


async def test_a_poison_letter_is_replayed_unchanged_but_for_its_history() -> None:
    clock = ManualClock()
    app = memory_app(clock)
    broker = await app.connected_broker()
    await broker.publish("q", b"\x00not json", {"x": "y"})
    async with broker.consume(["q"], prefetch=1) as consumer:
        (delivery,) = await consumer.fetch(1, timeout=1)
        await delivery.dead_letter("undecodable message: body is not JSON")
    admin = Admin(app)
    (info,) = (await admin.dead_letters()).letters
    assert info.task is None
    assert info.decode_error is not None
    report = await admin.replay([info.ref])
    assert (report.done, report.task_ids) == (1, [])
    async with broker.consume(["q"], prefetch=1) as consumer:
        (delivery,) = await consumer.fetch(1, timeout=1)
        assert delivery.body == b"\x00not json"
        assert delivery.headers["x"] == "y"
        assert [e.event for e in read_history(delivery.headers)] == ["dead", "replay"]
        await delivery.ack()
    await app.close()


class CoreOnlyBroker(MemoryBroker):
    """A memory broker that does not declare the inspection capability."""

    @property
    def capabilities(self) -> Capabilities:
        import attrs

        return attrs.evolve(super().capabilities, inspection=False)


async def test_without_the_inspection_capability_what_can_be_done_is_done() -> None:
    clock = ManualClock()
    app = Chicory(CoreOnlyBroker(clock=clock), default_queue="a")

    @app.task(name="t.b", queue="b")
    async def task_b() -> None: ...

    await bury(app, "a", "t.a", 3, clock)
    await bury(app, "b", "t.b", 2, clock)
    await bury(app, "hidden", "t.h", 1, clock)  # no one declares or consumes it
    admin = Admin(app)
    assert await admin.queue_names() == ["a", "b"]
    stats = {q.name: q for q in await admin.queues()}
    assert (stats["a"].dead, stats["b"].dead, stats["a"].consumers) == (3, 2, None)
    first = await admin.dead_letters(limit=4)
    second = await admin.dead_letters(limit=4, cursor=first.cursor)
    assert len(first.letters) + len(second.letters) == 5
    assert second.cursor is None
    refs = await admin.select(DeadLetterFilter(task="t.b"))
    with pytest.raises(CapabilityError, match="inspection"):
        await admin.replay(refs)
    report = await admin.replay(refs, verbatim=True)
    assert report.done == 2
    await app.close()


def test_history_headers_never_break_on_garbage() -> None:
    for value in ("", "not json", "{}", "[1, 2]", '[{"at": "yesterday"}]', "[" * 5000):
        assert read_history({HISTORY_HEADER: value}) == []
    entries = [
        HistoryEntry(at=_now(ManualClock()), event="retry", attempt=n, detail="x" * 9999)
        for n in range(80)
    ]
    headers = with_history({SIGNATURE_HEADER: "sig"}, *entries)
    kept = read_history(headers)
    assert [e.attempt for e in kept] == list(range(30, 80)), "the latest 50 are kept"
    assert all(len(e.detail) == 500 for e in kept)
    assert split_reason("plain") == ("plain", None)
    assert split_reason("a\n\n--- traceback ---\nTB") == ("a", "TB")


async def test_the_admin_never_waits_forever_for_a_missing_task() -> None:
    app = Chicory("memory://")
    with anyio.fail_after(5):
        info = await Admin(app).task("nope", wait=0.05)
    assert info.state.value == "PENDING"
    await app.close()
