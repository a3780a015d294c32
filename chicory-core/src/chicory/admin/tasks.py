"""Tasks for the admin API: sending one run of a task, and what is known of a task id."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, Final

from chicory.admin.models import DeadLetterFilter, DeadLetterInfo, TaskInfo
from chicory.app import Chicory
from chicory.errors import ConfigurationError
from chicory.records import ResultRecord, TaskProgress, decode_record, progress_of

__all__ = ["DEAD_LETTER_WINDOW", "near_failure", "read_record", "send_task", "task_info"]

DEAD_LETTER_WINDOW: Final = (timedelta(seconds=-5), timedelta(seconds=60))
"""Where a failed task's dead letter is looked for, around its FAILURE record's time: the
worker dead-letters right after it stores the record."""


async def send_task(
    app: Chicory,
    task_name: str,
    args: Sequence[Any],
    kwargs: Mapping[str, Any] | None,
    *,
    queue: str | None,
    countdown: float | None,
    task_id: str | None,
) -> str:
    """Enqueue one run of a registered task (arguments checked as ``delay()`` does).

    Raises:
        ConfigurationError: the app has no task of that name.
        ArgumentValidationError: the arguments do not fit the task's signature.
    """
    task = app.tasks.get(task_name)
    if task is None:
        known = ", ".join(sorted(app.tasks)) or "none"
        raise ConfigurationError(
            f"the app has no task named {task_name!r} (registered: {known}); import the "
            "module that defines it in the app's module, or check the name"
        )
    result = await task.apply_async(args, kwargs, queue=queue, countdown=countdown, task_id=task_id)
    return result.id


async def read_record(app: Chicory, task_id: str, *, wait: float | None) -> ResultRecord | None:
    """The record of ``task_id`` (after waiting up to ``wait`` s for a final one), if any."""
    stored = await read_stored(app, task_id, wait=wait)
    return None if stored is None else stored[0]


async def read_stored(
    app: Chicory, task_id: str, *, wait: float | None
) -> tuple[ResultRecord, TaskProgress | None] | None:
    """:func:`read_record`, with the progress the record reports (if it does)."""
    backend = await app.connected_backend()
    if wait is not None:
        await backend.wait(task_id, wait)
    data = await backend.get(task_id)
    if data is None:
        return None
    return decode_record(data, ResultRecord), progress_of(data)


def near_failure(record: ResultRecord) -> DeadLetterFilter:
    """The selection of the dead letter a FAILURE record's task was moved to."""
    early, late = DEAD_LETTER_WINDOW
    return DeadLetterFilter(
        task_id=record.task_id, since=record.updated_at + early, until=record.updated_at + late
    )


def task_info(
    record: ResultRecord, letter: DeadLetterInfo | None, progress: TaskProgress | None = None
) -> TaskInfo:
    """What the admin API reports of a task with ``record`` (reporting ``progress``),
    dead-lettered as ``letter``."""
    return TaskInfo(
        task_id=record.task_id,
        state=record.state,
        task=record.task,
        attempt=record.attempt,
        updated_at=record.updated_at,
        result=record.result,
        error=record.error,
        dead_letter=letter,
        history=letter.history if letter is not None else [],
        progress=progress,
    )
