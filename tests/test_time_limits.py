"""Time limits that stop the work: hard and soft, per task and per call, async and sync.

The overlap test counts how many runs of one task are inside its function at once: a sync
task whose thread outlives its limit must never run beside its own retry.
"""

from __future__ import annotations

import threading
import time

import anyio
import pytest

from chicory import (
    Chicory,
    ConfigurationError,
    RetryPolicy,
    TaskContext,
    TaskFailedError,
    TaskSoftTimeoutError,
)
from chicory.records import TaskState
from chicory.timelimits import SOFT_TIMEOUT_HEADER, TIMEOUT_HEADER, limits_for
from e2e_support import serving


def make_app() -> Chicory:
    return Chicory(broker="memory://")


async def test_a_sync_task_past_its_limit_never_runs_beside_its_retry() -> None:
    """The thread sleeps in C (it cannot be interrupted): the retry waits until it ends."""
    app = make_app()
    lock = threading.Lock()
    inside = 0
    most_inside = 0
    events: list[tuple[str, int]] = []

    @app.task(
        name="t.overrun",
        timeout=0.1,
        retry_policy=RetryPolicy(max_retries=1, backoff="fixed", delay=0),
    )
    def overrun(ctx: TaskContext) -> str:
        nonlocal inside, most_inside
        with lock:
            inside += 1
            most_inside = max(most_inside, inside)
            events.append(("start", ctx.attempt))
        try:
            time.sleep(0.4)  # a C call: the interruption lands only when it returns
            events.append(("side effect", ctx.attempt))
            return "done"
        finally:
            with lock:
                inside -= 1
                events.append(("end", ctx.attempt))

    async with serving(app, concurrency=4):
        result = await overrun.delay()
        with pytest.raises(TaskFailedError) as failed:
            await result.get(timeout=10)
    assert failed.value.exc_type == "chicory.errors.TaskTimeoutError"
    assert "timeout of 0.1 s" in failed.value.exc_message
    assert most_inside == 1, f"a run overlapped its retry: {events}"
    assert events.index(("end", 1)) < events.index(("start", 2)), events


async def test_a_sync_busy_loop_is_stopped_at_its_hard_limit() -> None:
    """Python code in a thread is interrupted at its next line when the limit passes."""
    app = make_app()
    ended = threading.Event()
    spins: list[int] = []

    @app.task(name="t.spin", timeout=0.2, retry_policy=RetryPolicy.never())
    def spin() -> None:
        n = 0
        try:
            while True:
                n += 1
        finally:
            spins.append(n)
            ended.set()

    async with serving(app):
        result = await spin.delay()
        with pytest.raises(TaskFailedError) as failed:
            await result.get(timeout=10)
    assert failed.value.exc_type == "chicory.errors.TaskTimeoutError"
    assert ended.is_set()
    assert spins[0] > 0


async def test_the_soft_limit_raises_inside_a_sync_task_first() -> None:
    app = make_app()

    @app.task(name="t.soft_sync", timeout=5, soft_timeout=0.1, retry_policy=RetryPolicy.never())
    def careful() -> str:
        try:
            while True:
                time.sleep(0.01)
        except TaskSoftTimeoutError:
            return "cleaned up"

    async with serving(app):
        assert await (await careful.delay()).get(timeout=10) == "cleaned up"


async def test_the_soft_limit_raises_inside_an_async_task_at_its_await() -> None:
    app = make_app()
    after_sleep: list[bool] = []

    @app.task(name="t.soft_async", timeout=5, soft_timeout=0.1, retry_policy=RetryPolicy.never())
    async def careful() -> str:
        try:
            await anyio.sleep(30)
            after_sleep.append(True)
        except TaskSoftTimeoutError:
            await anyio.sleep(0.01)  # cleanup may await: the task was not cancelled
            return "cleaned up"
        return "slept"

    async with serving(app):
        assert await (await careful.delay()).get(timeout=10) == "cleaned up"
    assert after_sleep == []


async def test_an_uncaught_soft_limit_fails_the_attempt() -> None:
    app = make_app()

    @app.task(name="t.soft_fail", soft_timeout=0.05, retry_policy=RetryPolicy.never())
    async def sleepy() -> None:
        await anyio.sleep(30)

    async with serving(app):
        with pytest.raises(TaskFailedError) as failed:
            await (await sleepy.delay()).get(timeout=10)
    assert failed.value.exc_type == "chicory.errors.TaskSoftTimeoutError"


async def test_a_per_call_timeout_stops_the_run_and_its_retries_keep_it() -> None:
    app = make_app()
    attempts: list[int] = []

    @app.task(name="t.per_call", retry_policy=RetryPolicy(max_retries=1, delay=0))
    async def sleepy(ctx: TaskContext, seconds: float) -> str:
        attempts.append(ctx.attempt)
        await anyio.sleep(seconds)
        return "slept"

    async with serving(app):
        quick = await sleepy.apply_async((0.01,), timeout=5)
        assert await quick.get(timeout=10) == "slept"
        attempts.clear()
        slow = await sleepy.apply_async((30,), timeout=0.1)
        with pytest.raises(TaskFailedError) as failed:
            await slow.get(timeout=10)
    assert failed.value.exc_type == "chicory.errors.TaskTimeoutError"
    assert attempts == [1, 2]  # the retry kept the call's limit
    assert (await slow.state()) is TaskState.FAILURE


def test_limits_are_checked_where_they_are_given() -> None:
    app = make_app()
    with pytest.raises(ConfigurationError, match="soft_timeout"):

        @app.task(name="t.bad", timeout=1, soft_timeout=2)
        def bad() -> None: ...

    with pytest.raises(ConfigurationError, match="timeout must be a positive"):

        @app.task(name="t.bad2", timeout=0)
        def bad2() -> None: ...


async def test_a_per_call_limit_is_checked_against_the_tasks_own() -> None:
    app = make_app()

    @app.task(name="t.limited", timeout=1)
    async def limited() -> None: ...

    with pytest.raises(ConfigurationError, match="below timeout"):
        await limited.apply_async(soft_timeout=5)
    with pytest.raises(ConfigurationError, match="positive"):
        await limited.apply_async(timeout=float("nan"))


def test_limit_headers_override_the_task_and_bad_ones_are_ignored() -> None:
    assert limits_for(None, None, {}) == (None, None)
    assert limits_for(5, 1, {TIMEOUT_HEADER: "2.5"}) == (2.5, 1)
    assert limits_for(5, None, {SOFT_TIMEOUT_HEADER: "9"}) == (5, None)  # not below: dropped
    assert limits_for(5, None, {TIMEOUT_HEADER: "nan", SOFT_TIMEOUT_HEADER: "-1"}) == (5, None)
    assert limits_for(None, None, {TIMEOUT_HEADER: "soon"}) == (None, None)
