"""Progress on PostgreSQL beyond the conformance suite's ``progress.*`` guarantees: records
too large to travel in a notification, subscriptions without LISTEN (``notify=False``), and
a task's progress pushed to ``result.get(on_progress=...)`` through a real worker."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from chicory import Chicory, TaskContext
from chicory.records import TaskProgress
from chicory_postgres.progress import INLINE_BYTES
from chicory_postgres.results import PostgresResultBackend
from e2e_support import serving

BackendFactory = Callable[..., Awaitable[PostgresResultBackend]]


async def test_a_record_too_large_to_notify_is_read_from_the_table(
    make_backend: BackendFactory,
) -> None:
    backend = await make_backend()
    task_id = f"big-{uuid.uuid4().hex}"
    large = b"x" * (INLINE_BYTES + 1)
    async with backend.watch_progress(task_id) as updates:
        await backend.store_progress(task_id, b"small", ttl=60)
        await backend.store_progress(task_id, large, ttl=60)
        got: list[bytes] = []
        with anyio.fail_after(10):
            async for data in updates:
                got.append(data)
                if len(got) == 2:
                    break
    assert got == [b"small", large]


async def test_without_notify_a_subscriber_reads_every_new_report(
    make_backend: BackendFactory,
) -> None:
    writer = await make_backend(notify=False)
    watcher = await make_backend(notify=False, poll_interval=0.2)
    task_id = f"polled-{uuid.uuid4().hex}"
    await writer.store_progress(task_id, b"before", ttl=60)
    async with watcher.watch_progress(task_id) as updates:
        for report in (b"one", b"two", b"three"):  # faster than the watcher reads
            await writer.store_progress(task_id, report, ttl=60)
        got: list[bytes] = []
        with anyio.fail_after(10):
            async for data in updates:
                got.append(data)
                if len(got) == 3:
                    break
        assert got == [b"one", b"two", b"three"]  # the report stored before is not pushed
        await writer.store(task_id, b"result", final=True, ttl=60)
        await writer.store_progress(task_id, b"late", ttl=60)  # never over a final record
        with anyio.move_on_after(0.6):
            async for data in updates:
                got.append(data)
        assert got == [b"one", b"two", b"three"]


async def test_a_worker_pushes_every_report_to_the_caller(postgres_url: str) -> None:
    app = Chicory(f"{postgres_url}?schema=progress_{uuid.uuid4().hex[:8]}")
    steps = [anyio.Event() for _ in range(3)]
    seen: list[Any] = []

    @app.task(name="progress.steps")
    async def three_steps(ctx: TaskContext) -> str:
        for index, step in enumerate(steps):
            await ctx.set_progress(index + 1, {"step": index + 1})
            await step.wait()
        return "done"

    def report(progress: TaskProgress) -> None:
        seen.append(progress.meta)
        steps[int(progress.value) - 1].set()  # the task goes on once its report arrived

    try:
        async with serving(app):
            result = await three_steps.delay()
            assert await result.get(timeout=30, on_progress=report) == "done"
    finally:
        await app.close()
    assert seen == [{"step": 1}, {"step": 2}, {"step": 3}]
