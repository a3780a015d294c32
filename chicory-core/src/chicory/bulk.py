"""Enqueueing many runs of one task at once: ``Task.delay_many``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from chicory.broker import outgoing_message
from chicory.calls import new_task_ids, outcome_unknown
from chicory.errors import ConfigurationError, PublishOutcomeUnknownError
from chicory.headers import check_headers
from chicory.middleware import OutgoingTask
from chicory.result import AsyncResult
from chicory.unique import check_key, enqueue_unique

if TYPE_CHECKING:
    from chicory.task import Task

__all__ = ["enqueue_many"]

R = TypeVar("R")

_NO_KWARGS: dict[str, Any] = {}


async def enqueue_many(
    task: Task[..., R],
    calls: Iterable[Sequence[Any] | Mapping[str, Any]],
    *,
    queue: str | None,
    headers: Mapping[str, str] | None,
    unique_keys: Sequence[str] | None,
    unique_for: float | timedelta | None,
    priority: int | None,
) -> list[AsyncResult[R]]:
    """``task.delay_many(calls, ...)``: see :meth:`Task.delay_many
    <chicory.task.Task.delay_many>` for the options and the errors."""
    items = list(calls)
    extra = (
        task._priority_header(priority)
        if priority is not None or task.priority is not None
        else None
    )
    app = task.app
    now = app.utcnow()
    ids = new_task_ids(len(items))
    queue = queue or task.queue
    bind, mode = task.signature.bind, task.validation_mode
    wire: list[tuple[str, list[Any], dict[str, Any]]] = []
    for call, task_id in zip(items, ids, strict=True):
        # A tuple or list is the common case, and cheaper to tell than the Mapping ABC.
        if type(call) is not tuple and type(call) is not list and isinstance(call, Mapping):
            wire_args, wire_kwargs = bind((), call, mode)
        else:
            wire_args, wire_kwargs = bind(call, _NO_KWARGS, mode)
        wire.append((task_id, wire_args, wire_kwargs))
    if unique_keys is not None or unique_for is not None:
        return await _unique_many(task, wire, unique_keys, unique_for, queue, headers, now, extra)
    if app.publish_hooks or headers:
        given = check_headers(headers or {})
        messages = [
            OutgoingTask(
                task=task.name,
                id=task_id,
                args=wire_args,
                kwargs=wire_kwargs,
                queue=queue,
                headers=dict(given),
                created_at=now,
            )
            for task_id, wire_args, wire_kwargs in wire
        ]
        try:
            await app.publish_prepared([app.prepare(message, extra) for message in messages])
        except PublishOutcomeUnknownError as exc:
            raise outcome_unknown(exc, task.name, [m.id for m in messages]) from exc
        return [AsyncResult(app, message.id, task) for message in messages]
    encoded = app.codec.encode_many(task.name, wire, queue=queue, created_at=now, headers=extra)
    outgoing = [outgoing_message(body, headers) for body, headers in encoded]
    try:
        await app.publish_encoded(queue, outgoing)
    except PublishOutcomeUnknownError as exc:
        raise outcome_unknown(exc, task.name, ids) from exc
    return [AsyncResult(app, task_id, task) for task_id in ids]


async def _unique_many(
    task: Task[..., R],
    wire: list[tuple[str, list[Any], dict[str, Any]]],
    keys: Sequence[str] | None,
    keep: float | timedelta | None,
    queue: str,
    headers: Mapping[str, str] | None,
    now: datetime,
    extra: dict[str, str] | None = None,
) -> list[AsyncResult[R]]:
    """``delay_many`` with one unique key per run (see :mod:`chicory.unique`), each with
    Chicory's own ``extra`` headers (its priority)."""
    if keys is None or isinstance(keys, str) or len(keys) != len(wire) or not all(keys):
        raise ConfigurationError(
            f"task {task.name!r}: delay_many(unique_keys=...) needs one non-empty key per "
            f"call ({len(wire)} calls)"
        )
    for key in keys:
        check_key(key)
    given = check_headers(headers or {})
    results: list[AsyncResult[R]] = []
    for key, (task_id, wire_args, wire_kwargs) in zip(keys, wire, strict=True):
        message = OutgoingTask(
            task=task.name,
            id=task_id,
            args=wire_args,
            kwargs=wire_kwargs,
            queue=queue,
            headers=dict(given),
            created_at=now,
        )
        results.append(await enqueue_unique(task, message, key, keep, extra))
    return results
