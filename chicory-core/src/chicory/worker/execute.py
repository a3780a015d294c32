"""Calling one task function: async or sync (in a bounded thread pool), with its timeout,
directly or through the app's execute middleware."""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs

from chicory.context import TaskContext
from chicory.errors import TaskTimeoutError
from chicory.middleware import ExecuteChain
from chicory.records import ErrorInfo
from chicory.task import Task

__all__ = ["Outcome", "describe_error", "execute", "execute_chain"]


@attrs.define(slots=True)
class Outcome:
    """What one run produced: a value, or the exception it raised.

    Attributes:
        value: The return value (when ``error`` is ``None``).
        error: The exception raised by the function, if any.
        runtime: Seconds the run took.
    """

    value: Any = None
    error: BaseException | None = None
    runtime: float = 0.0


def describe_error(exc: BaseException) -> ErrorInfo:
    """Turn an exception into its recordable text form."""
    kind = type(exc)
    qualified = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else (f"{kind.__module__}.{kind.__qualname__}")
    )
    text = "".join(traceback.format_exception(exc))
    return ErrorInfo(type=qualified, message=str(exc), traceback=text)


async def execute(
    task: Task[..., Any],
    args: list[Any],
    kwargs: dict[str, Any],
    context: TaskContext | None,
    limiter: anyio.CapacityLimiter,
) -> Outcome:
    """Run ``task`` once. Exceptions from the function are returned, never raised.

    Cancellation of the caller propagates (the worker decides what a cancelled job means).
    A sync function that times out is abandoned in its thread; its result is discarded.
    """
    if context is not None:
        args = [context, *args]
    started = time.perf_counter()
    try:
        if task.timeout is None:  # the common case: no cancel scope to set up
            if task.is_async:
                value = await task.fn(*args, **kwargs)
            else:
                value = await _call(task, args, kwargs, limiter)
            return Outcome(value, None, time.perf_counter() - started)  # positional: cheaper
        with anyio.move_on_after(task.timeout):
            value = await _call(task, args, kwargs, limiter)
            return Outcome(value=value, runtime=time.perf_counter() - started)
    except (Exception, SystemExit) as exc:  # a task calling sys.exit() must not stop the worker
        return Outcome(error=exc, runtime=time.perf_counter() - started)
    return Outcome(error=_timed_out(task), runtime=time.perf_counter() - started)


async def execute_chain(
    chain: ExecuteChain,
    task: Task[..., Any],
    args: list[Any],
    kwargs: dict[str, Any],
    context: TaskContext,
    limiter: anyio.CapacityLimiter,
) -> Outcome:
    """Run ``task`` once through ``chain``. Like :func:`execute`, exceptions are returned.

    The innermost call runs the function (with the context the chain hands down, if the
    task takes one) and raises what it raises, a timeout as
    :class:`~chicory.errors.TaskTimeoutError`, so each middleware sees the live exception.
    """
    run_task = _innermost(task, args, kwargs, limiter)
    started = time.perf_counter()
    try:
        value = await chain.run(context, run_task)
    except (Exception, SystemExit) as exc:
        return Outcome(error=exc, runtime=time.perf_counter() - started)
    return Outcome(value, None, time.perf_counter() - started)


def _innermost(
    task: Task[..., Any], args: list[Any], kwargs: dict[str, Any], limiter: anyio.CapacityLimiter
) -> Callable[[TaskContext], Awaitable[Any]]:
    """The end of the chain: a call of the task function with the context handed down (if
    the task takes one). An async function without a timeout is called directly: its
    coroutine is what the last middleware awaits, with no frame in between."""
    wants_context = task.signature.wants_context
    fn = task.fn
    if task.is_async and task.timeout is None:
        if wants_context:
            return lambda ctx: fn(ctx, *args, **kwargs)
        return lambda ctx: fn(*args, **kwargs)

    async def run_task(ctx: TaskContext) -> Any:
        call_args = [ctx, *args] if wants_context else args
        if task.timeout is None:
            return await _call(task, call_args, kwargs, limiter)
        with anyio.move_on_after(task.timeout):
            return await _call(task, call_args, kwargs, limiter)
        raise _timed_out(task)

    return run_task


def _timed_out(task: Task[..., Any]) -> TaskTimeoutError:
    return TaskTimeoutError(f"task {task.name!r} ran longer than its timeout of {task.timeout} s")


async def _call(
    task: Task[..., Any], args: list[Any], kwargs: dict[str, Any], limiter: anyio.CapacityLimiter
) -> Any:
    if task.is_async:
        return await task.fn(*args, **kwargs)
    call = functools.partial(task.fn, *args, **kwargs)
    return await anyio.to_thread.run_sync(call, limiter=limiter, abandon_on_cancel=True)
