"""TaskProgress reported from inside tasks, read from their result handles; idempotency keys."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anyio
import pytest

from chicory import Chicory, TaskContext
from chicory.errors import CapabilityError
from chicory.records import TaskProgress, TaskState
from e2e_support import eventually, serving
from processes import own_redis


async def test_an_async_task_reports_progress_a_waiter_sees() -> None:
    app = Chicory(broker="memory://")
    go_on = anyio.Event()

    @app.task(name="p.crunch")
    async def crunch(ctx: TaskContext, total: int) -> int:
        await ctx.set_progress(0.4, {"done": 40, "total": total})
        await go_on.wait()
        return total

    async with serving(app):
        result = await crunch.delay(100)
        await eventually(lambda: result.progress())
        assert await result.progress() == TaskProgress(value=0.4, meta={"done": 40, "total": 100})
        assert await result.state() is TaskState.STARTED
        go_on.set()
        assert await result.get(timeout=10) == 100
    assert await result.progress() is None, "a finished task's record holds its result"


async def test_a_sync_task_reports_progress_from_its_thread() -> None:
    app = Chicory(broker="memory://")
    go_on = threading.Event()

    @app.task(name="p.sync")
    def crunch(ctx: TaskContext) -> str:
        ctx.set_progress_sync(3, {"stage": "parse"})
        go_on.wait(10)
        return "done"

    async with serving(app):
        result = await crunch.delay()
        await eventually(lambda: result.progress())
        assert await result.progress() == TaskProgress(value=3.0, meta={"stage": "parse"})
        go_on.set()
        assert await result.get(timeout=10) == "done"


async def test_bad_progress_is_refused_in_the_task() -> None:
    app = Chicory(broker="memory://")

    @app.task(name="p.bad")
    async def bad(ctx: TaskContext) -> list[str]:
        errors = []
        for value, meta in ((float("nan"), None), (True, None), (1, ["not", "a", "map"])):
            try:
                await ctx.set_progress(value, meta)  # type: ignore[arg-type]
            except (ValueError, TypeError) as exc:
                errors.append(type(exc).__name__)
        try:
            ctx.set_progress_sync(0.5)
        except RuntimeError:
            errors.append("RuntimeError")
        return errors

    async with serving(app):
        result = await bad.delay()
        assert await result.get(timeout=10) == [
            "ValueError",
            "ValueError",
            "TypeError",
            "RuntimeError",
        ]


def test_progress_on_a_context_built_in_a_unit_test_stays_on_it() -> None:
    ctx = TaskContext(task_id="t1", task_name="p.unit")
    ctx.set_progress_sync(0.5, {"k": 1})
    assert ctx.progress == TaskProgress(value=0.5, meta={"k": 1})


def test_idempotency_keys_are_stable_per_task_id_and_step() -> None:
    first = TaskContext(task_id="abc", task_name="t", attempt=1)
    retry = TaskContext(task_id="abc", task_name="t", attempt=3, delivery_count=2)
    other = TaskContext(task_id="abd", task_name="t")
    assert first.idempotency_key("charge") == retry.idempotency_key("charge")
    assert first.idempotency_key("charge") != first.idempotency_key("email")
    assert first.idempotency_key("charge") != other.idempotency_key("charge")
    assert first.idempotency_key() != first.idempotency_key("charge")
    assert len(first.idempotency_key("charge")) == 32


def test_chicory_result_shows_progress(capsys: pytest.CaptureFixture[str]) -> None:
    """``chicory result`` shows a running task's progress, in its table and its JSON."""
    import json

    import cli_app

    from chicory.cli import main
    from chicory.clock import utcnow
    from chicory.records import ResultRecord, encode_progress_record

    record = ResultRecord(
        task_id="progress-1",
        task="shop.email",
        state=TaskState.STARTED,
        attempt=1,
        updated_at=utcnow(),
    )
    data = encode_progress_record(record, TaskProgress(value=0.25, meta={"rows": 10}))

    async def store() -> None:
        async with cli_app.app as app:
            await app.backend.store("progress-1", data, final=False, ttl=60)

    anyio.run(store)
    assert main(["result", "cli_app:app", "progress-1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["progress"] == {"value": 0.25, "meta": {"rows": 10}}
    assert main(["result", "cli_app:app", "progress-1"]) == 0
    out = capsys.readouterr().out
    assert "progress" in out
    assert '0.25 {"rows":10}' in out


async def _pushed_reports(app: Chicory) -> list[float]:
    """Run a task reporting three steps against ``app``; the reports its waiter was given."""
    steps: list[anyio.Event] = [anyio.Event() for _ in range(3)]
    seen: list[float] = []

    @app.task(name="p.steps")
    async def three_steps(ctx: TaskContext) -> str:
        for index, step in enumerate(steps):
            await ctx.set_progress(index + 1, {"step": index + 1})
            await step.wait()
        return "done"

    async def report(progress: TaskProgress) -> None:
        seen.append(progress.value)
        steps[int(progress.value) - 1].set()  # the task goes on once its report arrived

    async with serving(app):
        result = await three_steps.delay()
        assert await result.get(timeout=20, on_progress=report) == "done"
    return seen


async def test_get_is_pushed_every_progress_report_on_memory() -> None:
    assert await _pushed_reports(Chicory(broker="memory://")) == [1.0, 2.0, 3.0]


async def test_get_is_pushed_every_progress_report_on_redis(tmp_path: Path) -> None:
    with own_redis(tmp_path) as server:
        app = Chicory(broker=server.url)
        try:
            assert await _pushed_reports(app) == [1.0, 2.0, 3.0]
        finally:
            await app.close()


async def test_get_with_on_progress_needs_a_backend_that_pushes() -> None:
    class PlainBackend:
        """Delegates everything but the progress feed to a memory backend."""

        def __init__(self) -> None:
            from chicory_memory.results import MemoryResultBackend

            self._inner = MemoryResultBackend()

        def __getattr__(self, name: str) -> Any:
            if name in ("store_progress", "watch_progress"):
                raise AttributeError(name)
            return getattr(self._inner, name)

    app = Chicory(broker="memory://", backend=PlainBackend())  # type: ignore[arg-type]

    @app.task(name="p.plain")
    async def plain() -> int:
        return 1

    result = await plain.delay()
    with pytest.raises(CapabilityError, match=r"result\.progress"):
        await result.get(timeout=1, on_progress=print)
    await app.close()


async def test_get_is_pushed_every_progress_report_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    app = Chicory(broker=url, backend=url)
    try:
        assert await _pushed_reports(app) == [1.0, 2.0, 3.0]
    finally:
        await app.close()
