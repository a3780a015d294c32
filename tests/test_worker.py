"""Worker behaviour beyond the mode table: poison messages, timeouts, sync tasks, results."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
import attrs
import pytest

from chicory import (
    Chicory,
    ConfigurationError,
    DeliveryMode,
    MessageTooLargeError,
    RetryPolicy,
    TaskFailedError,
    Worker,
)
from chicory.envelope import TaskMessage
from chicory.records import TaskState, WorkerInfo, decode_record
from chicory.result import AsyncResult
from chicory.worker.worker import RUNNER_STREAK
from e2e_support import eventually, serving


@attrs.frozen
class Point:
    x: int
    y: int


def make_app(**options: object) -> Chicory:
    return Chicory(broker="memory://", **options)  # type: ignore[arg-type]


async def test_poison_messages_are_dead_lettered_and_the_worker_goes_on() -> None:
    """Undecodable body, unknown task and bad arguments: dead-lettered with a reason, once."""
    app = make_app()
    ran: list[int] = []

    @app.task(name="t.add")
    async def add(x: int, y: int) -> int:
        ran.append(x)
        return x + y

    broker = await app.connected_broker()
    await broker.publish("default", b"\x00\x01 definitely not json", {})
    # Well-formed JSON, but no task id: not run under the id "None".
    await broker.publish(
        "default",
        b'{"v": 1, "id": null, "task": "t.add", "args": [7, 1], "kwargs": {}, '
        b'"created_at": "2026-01-01T00:00:00+00:00"}',
        {},
    )
    unknown = TaskMessage(id="u1", task="t.missing", created_at=datetime.now(UTC))
    bad_args = TaskMessage(id="b1", task="t.add", args=["one", 2], created_at=datetime.now(UTC))
    for message in (unknown, bad_args):
        body, headers = app.codec.encode(message)
        await broker.publish("default", body, headers)
    good = await add.delay(2, 3)

    async with serving(app) as worker:
        assert await good.get(timeout=5) == 5
        await eventually(lambda: worker.processed == 5)
    assert ran == [2]
    letters = await broker.dead_letters("default")
    reasons = sorted(letter.reason for letter in letters)
    assert len(reasons) == 4
    assert any(r.startswith("undecodable message") and "not JSON" in r for r in reasons)
    assert any(r.startswith("undecodable message") and "$.id" in r for r in reasons)
    assert any("unknown task 't.missing'" in r for r in reasons)
    assert any("parameter 'x'" in r for r in reasons)
    assert all(letter.delivery_count == 1 for letter in letters)
    with pytest.raises(TaskFailedError, match="UnknownTaskError"):
        await AsyncResult(app, "u1").get(timeout=1)
    counts = await broker.counts("default")
    assert (counts.ready, counts.in_flight, counts.dead) == (0, 0, 4)
    await app.close()


async def test_a_task_calling_sys_exit_fails_without_stopping_the_worker() -> None:
    app = make_app()

    @app.task(name="t.quit", retry_policy=RetryPolicy.never())
    def quit_now() -> None:
        raise SystemExit(3)

    @app.task(name="t.after")
    async def after() -> str:
        return "still running"

    async with serving(app):
        with pytest.raises(TaskFailedError, match="SystemExit"):
            await (await quit_now.delay()).get(timeout=5)
        assert await (await after.delay()).get(timeout=5) == "still running"
    await app.close()


async def test_timeout_cancels_the_run_and_counts_as_a_failure() -> None:
    app = make_app()

    @app.task(name="t.sleepy", timeout=0.1, retry_policy=RetryPolicy.never())
    async def sleepy() -> None:
        await anyio.sleep(30)

    async with serving(app):
        with pytest.raises(TaskFailedError) as info:
            await (await sleepy.delay()).get(timeout=5)
    assert info.value.exc_type == "chicory.errors.TaskTimeoutError"
    await app.close()


async def test_sync_tasks_run_in_worker_threads_with_structured_arguments() -> None:
    app = make_app()
    threads: list[int] = []

    @app.task(name="t.norm")
    def norm(p: Point) -> Point:
        threads.append(threading.get_ident())
        return Point(abs(p.x), abs(p.y))

    async with serving(app):
        assert await (await norm.delay(Point(-1, 2))).get(timeout=5) == Point(1, 2)
    assert threads
    assert threads[0] != threading.get_ident()
    await app.close()


async def test_results_states_and_timeouts() -> None:
    app = make_app()

    @app.task(name="t.echo")
    async def echo(value: str) -> str:
        return value

    result = await echo.delay("hi")
    assert await result.state() is TaskState.PENDING
    with pytest.raises(TimeoutError):
        await result.get(timeout=0.05)
    async with serving(app):
        assert await result.get(timeout=5) == "hi"
    assert await result.ready()
    assert not await result.failed()
    assert (await result.info()).attempt == 1  # type: ignore[union-attr]
    await app.close()


async def test_ignore_result_refuses_get() -> None:
    app = make_app()

    @app.task(name="t.fire", ignore_result=True)
    async def fire() -> None: ...

    result = await fire.delay()
    with pytest.raises(ConfigurationError, match="ignore_result"):
        await result.get(timeout=1)
    await app.close()


async def test_oversized_messages_are_rejected_at_delay() -> None:
    app = make_app(max_message_bytes=1000)

    @app.task(name="t.big")
    async def big(blob: str) -> None: ...

    with pytest.raises(MessageTooLargeError, match="over the limit of 1000"):
        await big.delay("x" * 2000)
    assert (await (await app.connected_broker()).counts("default")).ready == 0
    await app.close()


async def test_countdown_and_queue_options() -> None:
    app = make_app()

    @app.task(name="t.later")
    async def later() -> str:
        return "ran"

    delayed = await later.apply_async(countdown=30)
    elsewhere = await later.apply_async(queue="other", task_id="fixed-id")
    assert elsewhere.id == "fixed-id"
    assert (await app.broker.counts("default")).delayed == 1
    assert (await app.broker.counts("other")).ready == 1
    async with serving(app, queues=["other"]):
        assert await elsewhere.get(timeout=5) == "ran"
    assert await delayed.state() is TaskState.PENDING
    with pytest.raises(ConfigurationError, match="countdown or eta"):
        await later.apply_async(countdown=1, eta=datetime.now(UTC))
    await app.close()


async def test_heartbeats_are_recorded() -> None:
    app = make_app()
    async with serving(app, heartbeat_interval=0.05) as worker:
        await eventually(lambda: _has_worker(app, worker))
    await app.close()


async def _has_worker(app: Chicory, worker: Worker) -> bool:
    records = await app.backend.workers()
    if worker.worker_id not in records:
        return False
    info = decode_record(records[worker.worker_id], WorkerInfo)
    return info.queues == ["default"]


def test_bad_worker_settings_are_rejected() -> None:
    app = make_app()
    with pytest.raises(ConfigurationError, match="concurrency"):
        Worker(app, concurrency=0)
    with pytest.raises(ConfigurationError, match="drain_timeout"):
        Worker(app, drain_timeout=-1)


async def test_track_started_records_started_before_the_result() -> None:
    """With track_started, STARTED is visible while the task runs, then SUCCESS."""
    app = make_app()
    release = anyio.Event()

    @app.task(name="t.tracked", track_started=True)
    async def tracked() -> int:
        await release.wait()
        return 1

    @app.task(name="t.untracked")
    async def untracked() -> int:
        await release.wait()
        return 2

    async with serving(app):
        one, two = await tracked.delay(), await untracked.delay()

        async def both_running() -> bool:
            return await one.state() is TaskState.STARTED

        await eventually(both_running)
        assert await two.state() is TaskState.PENDING
        release.set()
        assert (await one.get(timeout=5), await two.get(timeout=5)) == (1, 2)
    assert await one.state() is TaskState.SUCCESS
    await app.close()


async def test_observers_run_off_the_event_loop_so_a_blocked_one_holds_up_no_task() -> None:
    """Observers are called from their own thread: one stuck in a blocking call leaves the
    event loop (and so every task) running; its events wait for it."""
    import threading

    from chicory.plugins import TaskEvent, hookimpl

    gate = threading.Event()
    seen: list[tuple[str, int]] = []

    class Stuck:
        @hookimpl
        def chicory_task_succeeded(self, event: TaskEvent) -> None:
            gate.wait(30)  # blocks until the test has seen every task finish
            seen.append((event.task_id, threading.get_ident()))

    app = make_app(plugins=[Stuck()])

    @app.task(name="t.quick")
    async def quick(n: int) -> int:
        return n

    loop_thread = threading.get_ident()
    async with serving(app):
        results = await quick.delay_many((i,) for i in range(20))
        assert [await r.get(timeout=5) for r in results] == list(range(20))
        assert seen == []  # the observer is still stuck, and nothing waited for it
        gate.set()
        await eventually(lambda: len(seen) == 20)
    assert sorted(task_id for task_id, _ in seen) == sorted(r.id for r in results)
    assert all(thread != loop_thread for _, thread in seen)
    await app.close()


async def test_a_fetched_batch_of_at_most_once_tasks_is_pre_acked_in_one_call() -> None:
    """Runners wake one after another, but their pre-run acks still form one batch."""
    app = make_app()
    ran: list[int] = []

    @app.task(name="t.amo", delivery_mode=DeliveryMode.AT_MOST_ONCE)
    async def amo(i: int) -> None:
        ran.append(i)

    batches: list[int] = []

    async def record(deliveries: Sequence[Any]) -> None:
        batches.append(len(deliveries))

    before_ack_many(await app.connected_broker(), record)
    async with serving(app, concurrency=8):
        await anyio.sleep(0.2)  # every runner is idle, waiting for work
        await amo.delay_many([(i,) for i in range(8)])
        await eventually(lambda: len(ran) == 8)
    assert batches == [8]
    assert sorted(ran) == list(range(8))


def before_ack_many(broker: Any, before: Callable[[Sequence[Any]], Awaitable[None]]) -> None:
    """Wrap the broker's consumers so ``await before(deliveries)`` runs ahead of each
    ``ack_many`` call."""
    real_consume = broker.consume

    def consume(queues: Any, *, prefetch: int) -> Any:
        consumer = real_consume(queues, prefetch=prefetch)
        real_ack_many = consumer.ack_many

        async def ack_many(deliveries: Sequence[Any]) -> Any:
            await before(deliveries)
            return await real_ack_many(deliveries)

        consumer.ack_many = ack_many
        return consumer

    broker.consume = consume


def record_fetches(broker: Any, events: list[tuple[Any, ...]]) -> None:
    """Wrap the broker's consumers so each fetch call and its result land in ``events``."""
    real_consume = broker.consume

    def consume(queues: Any, *, prefetch: int) -> Any:
        consumer = real_consume(queues, prefetch=prefetch)
        real_fetch = consumer.fetch

        async def fetch(max_count: int, timeout: float) -> Any:
            events.append(("ask", max_count))
            got = await real_fetch(max_count, timeout)
            events.append(("got", len(got)))
            return got

        consumer.fetch = fetch
        return consumer

    broker.consume = consume


async def test_a_backlog_is_fetched_half_a_capacity_at_a_time_ahead_of_running() -> None:
    """Capacity 8: fetches ask for at most 4, and a full batch is followed by the next ask
    before any of its tasks runs; a lone task runs before the next fetch goes out."""
    app = make_app()
    events: list[tuple[Any, ...]] = []

    @app.task(name="t.n")
    async def n(i: int) -> None:
        events.append(("run", i))

    record_fetches(await app.connected_broker(), events)
    await n.delay_many([(i,) for i in range(40)])
    async with serving(app, concurrency=2, prefetch=6):
        await eventually(lambda: sum(e[0] == "run" for e in events) == 40)
        await anyio.sleep(0.2)  # drained: the fetch loop now waits on an empty queue
        events.append(("lone",))
        await n.delay(100)
        await eventually(lambda: ("run", 100) in events)
        await anyio.sleep(0.2)
    asks = [e[1] for e in events if e[0] == "ask"]
    assert max(asks) == 4
    first_run = events.index(("run", 0))
    assert [e[0] for e in events[:first_run]][:3] == ["ask", "got", "ask"]
    lone = events[events.index(("lone",)) :]
    got_it = lone.index(("got", 1))
    assert lone[got_it + 1] == ("run", 100)  # ran before the next fetch was asked for


async def test_a_runner_lets_the_event_loop_run_within_a_batch_of_instant_tasks() -> None:
    app = make_app()
    ticks = 0
    seen: list[int] = []

    @app.task(name="t.instant", ignore_result=True)
    async def instant() -> None:
        seen.append(ticks)

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    await instant.delay_many([()] * 200)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        async with serving(app, concurrency=1, prefetch=199):
            await eventually(lambda: len(seen) == 200)
        tg.cancel_scope.cancel()
    longest = run = 1
    for before, after in itertools.pairwise(seen):
        run = run + 1 if after == before else 1
        longest = max(longest, run)
    assert longest <= RUNNER_STREAK < 100  # a fetched batch here is 100 deliveries
    assert longest > 1  # the runner does not yield after every task either


class _Ticker:
    """Counts event-loop turns: a task that yields once per turn, for ordering assertions."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            self.ticks += 1
            await anyio.lowlevel.checkpoint()


async def test_a_lone_result_is_sent_in_the_turn_its_task_returned_and_a_backlog_is_batched() -> (
    None
):
    """A quiet worker's runner writes a lone task's result itself, without waiting a loop
    turn for the settler; with deliveries waiting for runners, results are still batched."""
    app = make_app()
    clock = _Ticker()
    log: list[tuple[str, int, int]] = []  # (what, tick, task argument or batch size)

    @app.task(name="t.echo")
    async def echo(i: int) -> int:
        log.append(("ran", clock.ticks, i))
        return i

    backend = await app.connected_backend()
    real_store_many = backend.store_many

    async def store_many(records: Any, *, ttl: float) -> None:
        log.append(("stored", clock.ticks, len(records)))
        await real_store_many(records, ttl=ttl)

    backend.store_many = store_many  # type: ignore[method-assign]
    await echo.delay_many([(i,) for i in range(40)])
    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.run)
        async with serving(app, concurrency=4, prefetch=12):
            await eventually(lambda: sum(e[0] == "ran" for e in log) == 40)
            await anyio.sleep(0.1)
            backlog = [size for what, _, size in log if what == "stored"]
            log.clear()
            lone = await echo.delay(100)
            assert await lone.get(timeout=5) == 100
        tg.cancel_scope.cancel()
    assert sum(backlog) == 40
    assert len(backlog) < 40
    assert max(backlog) > 1
    (_, ran_at, _), (what, stored_at, size) = log
    assert (what, size) == ("stored", 1)
    assert stored_at == ran_at


async def test_a_lone_at_most_once_task_is_pre_acked_from_its_runner() -> None:
    app = make_app()
    clock = _Ticker()
    log: list[tuple[str, int]] = []

    @app.task(name="t.amo_lone", delivery_mode=DeliveryMode.AT_MOST_ONCE)
    async def amo() -> None:
        log.append(("ran", clock.ticks))

    async def record(_deliveries: Sequence[Any]) -> None:
        log.append(("acked", clock.ticks))

    before_ack_many(await app.connected_broker(), record)
    async with anyio.create_task_group() as tg:
        tg.start_soon(clock.run)
        async with serving(app, concurrency=4):
            await anyio.sleep(0.1)
            await amo.delay()
            await eventually(lambda: len(log) == 2)
        tg.cancel_scope.cancel()
    (first, acked_at), (second, ran_at) = log
    assert (first, second) == ("acked", "ran")  # never before its ack is confirmed
    assert ran_at == acked_at  # and with no loop turn lost waiting for the settler


async def test_quick_at_most_once_tasks_keep_their_pre_acks_in_full_batches() -> None:
    """When a pre-ack batch is confirmed, its runners run their (instant) tasks and queue
    the next pre-acks at once: those go out together, not split behind an early one."""
    app = make_app()
    ran: list[int] = []

    @app.task(name="t.amo_quick", delivery_mode=DeliveryMode.AT_MOST_ONCE, ignore_result=True)
    async def quick(i: int) -> None:
        ran.append(i)

    batches: list[int] = []

    async def round_trip(deliveries: Sequence[Any]) -> None:  # acks that take a while
        batches.append(len(deliveries))
        if len(batches) == 1:  # the rest arrive while the first batch is in flight,
            await quick.delay_many([(i,) for i in range(7, 96)])  # to the idle runner
        await anyio.sleep(0.01)

    before_ack_many(await app.connected_broker(), round_trip)
    await quick.delay_many([(i,) for i in range(7)])
    async with serving(app, concurrency=8, prefetch=24):
        await eventually(lambda: len(ran) == 96)
    # The lone runner's pre-ack joins the next full batch: no cycle is split into 7 + 1.
    assert batches == [7, *[8] * 11, 1]
