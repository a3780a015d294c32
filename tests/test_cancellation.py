"""Cancelling tasks in one process (memory://): queued, delayed, running async and sync.

Cancellation across processes on Redis is in ``test_processes_redis.py``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from chicory import (
    Chicory,
    RetryPolicy,
    TaskCancelledError,
    TaskContext,
)
from chicory.errors import CapabilityError
from chicory.records import TaskState
from chicory.worker.states import JobState
from e2e_support import eventually, serving


def make_app() -> Chicory:
    return Chicory(broker="memory://")


async def test_a_cancelled_queued_task_never_runs() -> None:
    app = make_app()
    ran: list[int] = []

    @app.task(name="t.queued")
    async def queued(n: int) -> int:
        ran.append(n)
        return n

    keep = await queued.delay(1)
    drop = await queued.delay(2)
    await drop.cancel()
    async with serving(app):
        assert await keep.get(timeout=5) == 1
        with pytest.raises(TaskCancelledError, match="before it started"):
            await drop.get(timeout=5)
    assert ran == [1]
    assert await drop.state() is TaskState.CANCELLED
    counts = await app.broker.counts("default")
    assert (counts.ready, counts.in_flight, counts.dead) == (0, 0, 0)  # acked, not dead


async def test_a_cancelled_delayed_task_never_runs() -> None:
    app = make_app()
    ran: list[str] = []

    @app.task(name="t.later")
    async def later() -> None:
        ran.append("ran")

    result = await later.apply_async(countdown=0.2)
    async with serving(app):
        await result.cancel()
        with pytest.raises(TaskCancelledError):
            await result.get(timeout=5)
    assert ran == []


async def test_a_running_async_task_stops_at_its_next_await() -> None:
    app = make_app()
    started = anyio.Event()
    seen: list[Any] = []

    @app.task(name="t.long", retry_policy=RetryPolicy(max_retries=3))
    async def long(ctx: TaskContext) -> str:
        started.set()
        try:
            await anyio.sleep(30)
            seen.append("after the await")
        finally:
            seen.append(ctx.cancelled)
        return "finished"

    async with serving(app) as worker:
        result = await long.delay()
        await started.wait()
        await result.cancel()
        with pytest.raises(TaskCancelledError, match="while running"):
            await result.get(timeout=5)
        await eventually(lambda: worker.running == 0)
    assert seen == [True]  # stopped in the await it was in; the flag was set by then
    assert await result.state() is TaskState.CANCELLED  # not retried, not dead-lettered
    assert (await app.broker.counts("default")).dead == 0


async def test_a_running_sync_task_sees_the_flag_and_ends_cancelled() -> None:
    app = make_app()
    started = threading.Event()
    loops: list[int] = []

    @app.task(name="t.sync_long")
    def sync_long(ctx: TaskContext) -> str:
        started.set()
        n = 0
        while not ctx.cancelled:
            n += 1
            time.sleep(0.01)
        loops.append(n)
        return "returned anyway"

    async with serving(app):
        result = await sync_long.delay()
        await eventually(started.is_set)
        await result.cancel()
        with pytest.raises(TaskCancelledError):
            await result.get(timeout=5)
    assert len(loops) == 1  # the thread ended; its return value is not the outcome


async def test_a_task_that_finished_keeps_its_result() -> None:
    app = make_app()

    @app.task(name="t.quick")
    async def quick() -> int:
        return 7

    async with serving(app):
        result = await quick.delay()
        assert await result.get(timeout=5) == 7
        await result.cancel()
        await anyio.sleep(0.05)
    assert await result.get(timeout=1) == 7


async def test_forget_deletes_the_stored_result() -> None:
    app = make_app()

    @app.task(name="t.forgotten")
    async def forgotten() -> int:
        return 1

    async with serving(app):
        result = await forgotten.delay()
        assert await result.get(timeout=5) == 1
    assert await result.forget() is True
    assert await result.state() is TaskState.PENDING
    assert await result.forget() is False


async def test_cancel_needs_a_backend_with_revocation_records() -> None:
    class PlainBackend:
        """Delegates everything but revocations to a memory backend."""

        def __init__(self) -> None:
            from chicory_memory.results import MemoryResultBackend

            self._inner = MemoryResultBackend()

        def __getattr__(self, name: str) -> Any:
            if name in ("revoke", "revocations", "watch_revocations", "forget"):
                raise AttributeError(name)
            return getattr(self._inner, name)

    app = Chicory(broker="memory://", backend=PlainBackend())  # type: ignore[arg-type]

    @app.task(name="t.plain")
    async def plain() -> None: ...

    result = await plain.delay()
    with pytest.raises(CapabilityError, match="revocation records"):
        await result.cancel()
    with pytest.raises(CapabilityError, match="delete records"):
        await result.forget()


def test_cancelled_is_a_final_state_and_a_job_state() -> None:
    assert TaskState.CANCELLED.final
    assert JobState.CANCELLED.value == "cancelled"
