"""The delivery-mode rules (docs/delivery-modes.md), row by row, on the memory broker with
the real worker."""

from __future__ import annotations

import anyio
import pytest

from chicory import Chicory, DeliveryMode, RetryPolicy, TaskContext, TaskFailedError
from chicory.records import TaskState
from e2e_support import FailingAckBroker, eventually, serving

AMO = DeliveryMode.AT_MOST_ONCE
ALO = DeliveryMode.AT_LEAST_ONCE
BOTH = pytest.mark.parametrize("mode", [AMO, ALO], ids=["at_most_once", "at_least_once"])


def make_app(lease: float = 30.0, **options: object) -> Chicory:
    return Chicory(broker="memory://", broker_options={"lease_seconds": lease}, **options)  # type: ignore[arg-type]


@BOTH
async def test_ack_timing_per_mode(mode: DeliveryMode) -> None:
    """AT_MOST_ONCE is acked before the function starts; AT_LEAST_ONCE is held while it runs."""
    app = make_app()
    in_flight_while_running: list[int] = []

    @app.task(name="t.probe", delivery_mode=mode)
    async def probe() -> None:
        in_flight_while_running.append((await app.broker.counts("default")).in_flight)

    async with serving(app):
        await (await probe.delay()).get(timeout=5)
    assert in_flight_while_running == [0 if mode is AMO else 1]
    assert (await app.broker.counts("default")).in_flight == 0
    await app.close()


async def test_at_most_once_does_not_run_when_the_pre_ack_fails() -> None:
    """An at-most-once task whose ack fails is not run (it may be lost, never duplicated)."""
    base = make_app()
    app = Chicory(broker=FailingAckBroker(base.broker), backend=base.backend)  # type: ignore[arg-type]
    ran: list[int] = []

    @app.task(name="t.amo", delivery_mode=AMO)
    async def amo() -> None:
        ran.append(1)

    async with serving(app) as worker:
        await amo.delay()
        await eventually(lambda: worker.processed == 1)
    assert ran == []
    await app.close()


@BOTH
async def test_crash_mid_task(mode: DeliveryMode) -> None:
    """Killed mid-task: AT_MOST_ONCE loses the task; AT_LEAST_ONCE runs it again elsewhere.

    Prefetched work that had not started is redelivered in both modes.
    """
    app = make_app(lease=0.3)
    runs: dict[str, int] = {"slow": 0, "other": 0}
    started = anyio.Event()

    @app.task(name="t.slow", delivery_mode=mode)
    async def slow() -> str:
        runs["slow"] += 1
        if runs["slow"] == 1:
            started.set()
            await anyio.sleep(60)
        return "done"

    @app.task(name="t.other", delivery_mode=mode)
    async def other(n: int) -> int:
        runs["other"] += 1
        return n

    first = await slow.delay()
    rest = await other.delay_many((i,) for i in range(3))
    async with serving(app, concurrency=1, prefetch=3, lease_renew_interval=0.05) as worker:
        await started.wait()
        worker.kill()
    assert runs == {"slow": 1, "other": 0}

    async with serving(app, concurrency=4):
        assert [await r.get(timeout=5) for r in rest] == [0, 1, 2]
        if mode is ALO:
            assert await first.get(timeout=5) == "done"
        else:
            await anyio.sleep(0.6)  # two leases: anything still held would be redelivered
    assert runs == {"slow": 2 if mode is ALO else 1, "other": 3}
    counts = await app.broker.counts("default")
    assert (counts.ready, counts.in_flight, counts.delayed) == (0, 0, 0)
    await app.close()


@BOTH
async def test_retries_republish_the_next_attempt_with_backoff(mode: DeliveryMode) -> None:
    """A raising task with retries left is re-published with attempt+1, after its delay."""
    app = make_app()
    attempts: list[int] = []

    @app.task(
        name="t.flaky",
        delivery_mode=mode,
        retry_policy=RetryPolicy(max_retries=3, backoff="fixed", delay=0.2),
    )
    async def flaky(ctx: TaskContext) -> int:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError("try again")
        return ctx.attempt

    async with serving(app):
        result = await flaky.delay()

        async def retry_is_waiting() -> bool:
            return (await app.broker.counts("default")).delayed == 1

        await eventually(retry_is_waiting)
        assert attempts == [1]
        assert await result.get(timeout=5) == 3
    assert attempts == [1, 2, 3]
    counts = await app.broker.counts("default")
    assert (counts.ready, counts.in_flight, counts.delayed, counts.dead) == (0, 0, 0, 0)
    await app.close()


@BOTH
async def test_exhausted_retries_record_failure_and_dead_letter(mode: DeliveryMode) -> None:
    """Retries exhausted: FAILURE is recorded with the remote error, and it is dead-lettered."""
    app = make_app()

    @app.task(name="t.doomed", delivery_mode=mode, retry_policy=RetryPolicy(max_retries=2, delay=0))
    async def doomed(x: int) -> None:
        raise ValueError(f"bad value {x}")

    async with serving(app):
        result = await doomed.delay(7)
        with pytest.raises(TaskFailedError) as info:
            await result.get(timeout=5)
    assert info.value.exc_type == "ValueError"
    assert info.value.exc_message == "bad value 7"
    assert info.value.traceback is not None
    assert "in doomed" in info.value.traceback
    assert await result.state() is TaskState.FAILURE
    assert await result.failed()
    (letter,) = await app.broker.dead_letters("default")
    assert "retries exhausted after 3 attempts" in letter.reason
    counts = await app.broker.counts("default")
    assert (counts.ready, counts.in_flight, counts.delayed, counts.dead) == (0, 0, 0, 1)
    await app.close()


@BOTH
async def test_ctx_fail_is_never_retried(mode: DeliveryMode) -> None:
    """ctx.fail(reason) fails the task at once with that reason, whatever retries remain."""
    app = make_app()
    attempts: list[int] = []

    @app.task(name="t.reject", delivery_mode=mode, retry_policy=RetryPolicy(max_retries=5))
    async def reject(ctx: TaskContext) -> None:
        attempts.append(ctx.attempt)
        ctx.fail("order was cancelled")

    async with serving(app):
        with pytest.raises(TaskFailedError, match="order was cancelled"):
            await (await reject.delay()).get(timeout=5)
    assert attempts == [1]
    (letter,) = await app.broker.dead_letters("default")
    assert letter.reason == "failed by the task: order was cancelled"
    await app.close()


async def test_ctx_retry_is_bounded_by_max_retries() -> None:
    """ctx.retry() asks for another attempt, but never more than max_retries."""
    app = make_app()
    seen: list[tuple[int, int]] = []

    @app.task(name="t.again", retry_policy=RetryPolicy(max_retries=2))
    async def again(ctx: TaskContext) -> None:
        seen.append((ctx.attempt, ctx.retries_left))
        ctx.retry(countdown=0)

    async with serving(app):
        with pytest.raises(TaskFailedError):
            await (await again.delay()).get(timeout=5)
    assert seen == [(1, 2), (2, 1), (3, 0)]
    (letter,) = await app.broker.dead_letters("default")
    assert "no retries left" in letter.reason
    await app.close()


@BOTH
async def test_graceful_drain_finishes_running_tasks(mode: DeliveryMode) -> None:
    """stop(): fetching stops and running tasks finish within the drain timeout."""
    app = make_app()
    started = anyio.Event()

    @app.task(name="t.short", delivery_mode=mode)
    async def short() -> str:
        started.set()
        await anyio.sleep(0.2)
        return "finished"

    result = await short.delay()
    async with serving(app, drain_timeout=5) as worker:
        await started.wait()
        worker.stop()
    assert await result.get(timeout=0.5) == "finished"
    counts = await app.broker.counts("default")
    assert (counts.ready, counts.in_flight) == (0, 0)
    await app.close()


@BOTH
async def test_drain_timeout_hands_back_unfinished_work_now(mode: DeliveryMode) -> None:
    """After the drain timeout, AT_LEAST_ONCE work is handed back at once (not after a lease);
    AT_MOST_ONCE work was acked, so it is gone. Prefetched work goes back in both modes."""
    app = make_app(lease=60)
    started = anyio.Event()

    @app.task(name="t.stuck", delivery_mode=mode)
    async def stuck(n: int) -> None:
        started.set()
        await anyio.sleep(60)

    await stuck.delay_many((i,) for i in range(4))
    async with serving(app, concurrency=1, prefetch=3, drain_timeout=0.1) as worker:
        await started.wait()
        await eventually(lambda: worker.processed == 0 and worker.running == 1)
        worker.stop()
    counts = await app.broker.counts("default")
    assert counts.in_flight == 0
    assert counts.ready == (4 if mode is ALO else 3)
    await app.close()


async def test_long_task_is_not_redelivered_while_its_worker_lives() -> None:
    """Lease renewal: a task running for several lease periods runs exactly once."""
    app = make_app(lease=0.2)
    runs: list[int] = []

    @app.task(name="t.long", delivery_mode=ALO)
    async def long(ctx: TaskContext) -> int:
        runs.append(ctx.delivery_count)
        await anyio.sleep(1.0)
        return len(runs)

    async with serving(app, lease_renew_interval=0.05), serving(app, lease_renew_interval=0.05):
        assert await (await long.delay()).get(timeout=5) == 1
    assert runs == [1]
    await app.close()


@BOTH
async def test_prefetched_work_keeps_its_lease_while_waiting_for_a_runner(
    mode: DeliveryMode,
) -> None:
    """Deliveries prefetched behind a long task are not redelivered to another live worker."""
    app = make_app(lease=0.2)
    runs: dict[int, int] = {}
    blocker_started = anyio.Event()

    @app.task(name="t.work", delivery_mode=mode)
    async def work(n: int, seconds: float) -> int:
        runs[n] = runs.get(n, 0) + 1
        if n == 0:
            blocker_started.set()
        await anyio.sleep(seconds)
        return n

    first = await work.delay_many([(0, 1.0), (1, 0.0), (2, 0.0), (3, 0.0)])
    async with serving(app, concurrency=1, prefetch=3, lease_renew_interval=0.05):
        await blocker_started.wait()
        async with serving(app, concurrency=4, lease_renew_interval=0.05):
            assert [await r.get(timeout=5) for r in first] == [0, 1, 2, 3]
    assert runs == {0: 1, 1: 1, 2: 1, 3: 1}
    await app.close()


async def test_at_most_once_does_not_run_a_delivery_whose_lease_was_lost() -> None:
    """A prefetched at-most-once task whose lease lapsed, and which another consumer took,
    is not run by the worker that lost it: its pre-run ack reports the lost lease."""
    app = make_app(lease=0.3)
    ran: list[str] = []
    blocker_started, release = anyio.Event(), anyio.Event()

    @app.task(name="t.amo", delivery_mode=AMO)
    async def amo(name: str) -> None:
        ran.append(name)
        if name == "blocker":
            blocker_started.set()
            await release.wait()

    await amo.delay("blocker")
    await amo.delay("victim")
    # No renewal within the lease: the victim, prefetched behind the blocker, lapses.
    async with serving(app, concurrency=1, prefetch=1, lease_renew_interval=60.0) as worker:
        await blocker_started.wait()
        broker = await app.connected_broker()
        async with broker.consume(["default"], prefetch=1) as thief:
            taken = await thief.fetch(1, timeout=5)
            assert [d.delivery_count for d in taken] == [2]
            release.set()
            await eventually(lambda: worker.processed == 2)
            assert ran == ["blocker"]
            assert (await broker.counts("default")).in_flight == 1  # the thief's, untouched
            assert not await thief.ack_many(taken)
    await app.close()
