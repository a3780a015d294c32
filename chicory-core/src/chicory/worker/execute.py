"""Calling one task function: async, or sync in a worker thread, under its time limits,
directly or through the app's execute middleware."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs

from chicory.context import TaskContext
from chicory.errors import TaskSoftTimeoutError, TaskTimeoutError
from chicory.middleware import ExecuteChain
from chicory.records import ErrorInfo
from chicory.task import Task
from chicory.timelimits import NO_LIMITS, Limits, hard_error, soft_error
from chicory.worker.interrupt import Interruptible, wait_within
from chicory.worker.slots import RunnerSlot
from chicory.worker.threads import SyncThreads, ThreadCall

__all__ = ["Outcome", "describe_error", "execute", "execute_chain"]

log = logging.getLogger("chicory.worker")


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
    threads: SyncThreads | None = None,
    limits: Limits = NO_LIMITS,
    slot: RunnerSlot | None = None,
) -> Outcome:
    """Run ``task`` once. Exceptions from the function are returned, never raised.

    Cancellation of the caller propagates (the worker decides what a cancelled job means).
    Time limits work as :mod:`chicory.timelimits` describes; a sync function runs in one
    of ``threads`` (a private set when ``None``) and is awaited until its thread has ended.
    ``slot.in_function`` is set while an async function runs; the caller clears it.
    """
    if context is not None:
        args = [context, *args]
    started = time.perf_counter()
    try:
        if task.is_async:
            if limits is NO_LIMITS:  # the common case: no cancel scope to set up
                if slot is not None:
                    slot.in_function = True
                value = await task.fn(*args, **kwargs)
            else:
                value = await _call_async(task, args, kwargs, limits, slot)
        else:
            value = await _call_sync(task, args, kwargs, limiter, threads, limits, slot)
        return Outcome(value, None, time.perf_counter() - started)  # positional: cheaper
    except (Exception, SystemExit) as exc:  # a task calling sys.exit() must not stop the worker
        return Outcome(error=exc, runtime=time.perf_counter() - started)


async def execute_chain(
    chain: ExecuteChain,
    task: Task[..., Any],
    args: list[Any],
    kwargs: dict[str, Any],
    context: TaskContext,
    limiter: anyio.CapacityLimiter,
    threads: SyncThreads | None = None,
    limits: Limits = NO_LIMITS,
    slot: RunnerSlot | None = None,
) -> Outcome:
    """Run ``task`` once through ``chain``. Like :func:`execute`, exceptions are returned.

    The innermost call runs the function as :func:`execute` does (with the context the chain
    hands down, if the task takes one) and raises what it raises, a time limit as
    :class:`~chicory.errors.TaskTimeoutError`: each middleware sees the live exception.
    """
    run_task = _innermost(task, args, kwargs, limiter, threads, limits, slot)
    started = time.perf_counter()
    try:
        value = await chain.run(context, run_task)
    except (Exception, SystemExit) as exc:
        return Outcome(error=exc, runtime=time.perf_counter() - started)
    return Outcome(value, None, time.perf_counter() - started)


def _innermost(
    task: Task[..., Any],
    args: list[Any],
    kwargs: dict[str, Any],
    limiter: anyio.CapacityLimiter,
    threads: SyncThreads | None,
    limits: Limits,
    slot: RunnerSlot | None,
) -> Callable[[TaskContext], Awaitable[Any]]:
    """The end of the chain. An async function without time limits is called directly: its
    coroutine is what the last middleware awaits, with no frame in between."""
    wants_context = task.signature.wants_context
    fn = task.fn
    if task.is_async and limits is NO_LIMITS:

        def call(ctx: TaskContext) -> Awaitable[Any]:
            if slot is not None:
                slot.in_function = True
            return fn(ctx, *args, **kwargs) if wants_context else fn(*args, **kwargs)  # type: ignore[no-any-return]

        return call

    async def run_task(ctx: TaskContext) -> Any:
        call_args = [ctx, *args] if wants_context else args
        if task.is_async:
            return await _call_async(task, call_args, kwargs, limits, slot)
        return await _call_sync(task, call_args, kwargs, limiter, threads, limits, slot)

    return run_task


async def _call_async(
    task: Task[..., Any],
    args: list[Any],
    kwargs: dict[str, Any],
    limits: Limits,
    slot: RunnerSlot | None,
) -> Any:
    hard, soft = limits
    awaitable: Any = task.fn(*args, **kwargs)
    timer = None
    if soft is not None:
        awaitable = interruptible = Interruptible(awaitable)
        loop = asyncio.get_running_loop()
        timer = loop.call_later(soft, interruptible.interrupt, soft_error(soft))
    if slot is not None:
        slot.in_function = True
    try:
        if hard is None:
            return await awaitable
        with anyio.move_on_after(hard):
            return await awaitable
        raise hard_error(task.name, hard)
    finally:
        if timer is not None:
            timer.cancel()


_threads = SyncThreads()  # for callers that bring no threads of their own


async def _call_sync(
    task: Task[..., Any],
    args: list[Any],
    kwargs: dict[str, Any],
    limiter: anyio.CapacityLimiter,
    threads: SyncThreads | None,
    limits: Limits,
    slot: RunnerSlot | None,
) -> Any:
    call = ThreadCall(functools.partial(task.fn, *args, **kwargs), asyncio.get_running_loop())
    async with limiter:
        (threads or _threads).submit(call)
        if slot is not None:
            slot.call = call
        if limits is NO_LIMITS:
            return await call.future
        return await _wait_limited(task, call, limits)


async def _wait_limited(task: Task[..., Any], call: ThreadCall, limits: Limits) -> Any:
    """Await ``call`` under ``limits``: interrupt it at each, and wait for its thread to end."""
    hard, soft = limits
    future = call.future
    begun = time.perf_counter()
    if soft is not None and not await wait_within(future, soft):
        call.interrupt(TaskSoftTimeoutError)
    overran = False
    if hard is not None and not await wait_within(future, hard - (time.perf_counter() - begun)):
        overran = call.interrupt(TaskTimeoutError)
        if overran:
            log.warning(
                "task %s ran past its time limit of %g s: stopping its thread; its runner and "
                "any retry wait until the thread has ended",
                task.name,
                hard,
            )
    try:
        value = await future  # however long it takes: a retry must never run beside it
    except Exception as exc:
        if overran:
            raise hard_error(task.name, hard or 0.0) from exc
        raise
    if overran:
        raise hard_error(task.name, hard or 0.0)
    return value
