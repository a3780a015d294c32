"""Static checks of the public API's types: mypy (run by scripts/check) reads this file.

``@app.task`` keeps the function's parameters (minus a leading ``TaskContext``) and its
return type (unwrapped from the coroutine), so ``delay`` is checked and ``get`` is typed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, assert_type

from chicory import AsyncResult, Chicory, Task, TaskContext
from chicory.middleware import CallNext, Middleware, OutgoingTask


def declare(app: Chicory) -> None:
    """Declare tasks of each shape and check what the decorator makes of them."""

    @app.task(name="typing.async")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    async def with_context(ctx: TaskContext, item: str) -> list[str]:
        return [item]

    @app.task(name="typing.sync")
    def render(name: str) -> bytes:
        return name.encode()

    typed_add: Task[[int, int], int] = add
    typed_with_context: Task[[str], list[str]] = with_context
    typed_render: Task[[str], bytes] = render
    wrong: Task[[int, int], str] = add  # type: ignore[assignment]
    del typed_add, typed_with_context, typed_render, wrong


async def enqueue(add: Task[[int, int], int]) -> None:
    """``delay`` takes the task's parameters and returns a typed result handle."""
    result = await add.delay(1, 2)
    assert_type(result, AsyncResult[int])
    assert_type(await result.get(timeout=1), int)
    await add.delay("1", 2)  # type: ignore[arg-type]


class _Stamp(Middleware):
    """A middleware of each kind type-checks against the base class's signatures."""

    def before_publish(self, message: OutgoingTask) -> None:
        message.headers["x-stamp"] = message.id

    async def execute(self, ctx: TaskContext, call_next: CallNext) -> Any:
        assert_type(ctx.headers, Mapping[str, str])
        return await call_next(ctx)


async def with_headers(app: Chicory, add: Task[[int, int], int]) -> None:
    """Headers go with ``apply_async`` and ``delay_many``; middleware are added typed."""
    app.add_middleware(_Stamp())
    result = await add.apply_async((1, 2), headers={"tenant": "acme"})
    assert_type(result, AsyncResult[int])
    await add.delay_many([(1, 2)], headers={"tenant": "acme"})


async def workflows(add: Task[[int, int], int], total: Task[[list[int]], int]) -> None:
    """Flows are built from signatures; their handles are typed by where the flow ends."""
    from chicory.records import TaskProgress
    from chicory.workflow import Chain, GroupResult, Signature, chain, chord, group

    step = add.s(1)
    assert_type(step, Signature)
    assert_type(chain(add.s(1, 2), add.s(3)) | add.s(4), Chain)
    flow = await chord([add.s(i, i) for i in range(3)], total.s()).apply_async()
    assert_type(flow, AsyncResult[Any] | GroupResult)
    members = await group(add.s(1, 1), add.s(2, 2)).apply_async()
    assert_type(members, GroupResult)
    assert_type(await members.get(timeout=1), list[Any])

    def show(progress: TaskProgress) -> None:
        print(progress.value, progress.meta)

    result = await add.delay(1, 2)
    assert_type(await result.get(timeout=1, on_progress=show), int)
    assert_type(await result.progress(), TaskProgress | None)


def context_helpers(ctx: TaskContext) -> None:
    """Idempotency keys are text; progress from a sync task returns nothing."""
    assert_type(ctx.idempotency_key("charge"), str)
    ctx.set_progress_sync(0.5, {"done": 1})
