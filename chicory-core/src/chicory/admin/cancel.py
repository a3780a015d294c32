"""Cancelling tasks and seeing delayed ones, for the admin API (``chicory cancel``, ``delayed``).

:func:`cancel_task` does what ``AsyncResult.cancel()`` does (a revocation record, pushed to
the workers: :mod:`chicory.revocation`) and, where the broker has the ``delayed_listing``
capability (:mod:`chicory.delayed`), also looks for the task among the delayed messages of
the queues and removes it there, recording it ``CANCELLED`` at once: a delayed task is then
gone even if its ``eta`` lies beyond the revocation's TTL.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from chicory.admin.tasks import read_record
from chicory.app import Chicory
from chicory.clock import utcnow
from chicory.delayed import DelayedListing, DelayedMessage, delayed_listing
from chicory.errors import MessageDecodeError
from chicory.records import ErrorInfo, ResultRecord, TaskState, encode_record
from chicory.revocation import revocations_of

__all__ = ["CancelReport", "DelayedTask", "DelayedTasks", "cancel_task", "delayed_tasks"]


@attrs.frozen(kw_only=True)
class DelayedTask:
    """A delayed message, read as the task it carries.

    Attributes:
        id: The broker's message id (what ``remove_delayed`` takes).
        queue: Its queue.
        due_at: When it falls due.
        task_id: The task id, or ``None`` when the body is not a readable envelope.
        task: The task name (``None`` likewise).
        attempt: The attempt it is (a retry waiting for its backoff has 2 or more).
        args: The positional arguments (JSON values).
        kwargs: The keyword arguments.
    """

    id: str
    queue: str
    due_at: datetime
    task_id: str | None
    task: str | None
    attempt: int
    args: list[Any]
    kwargs: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """As ``--json`` prints it."""
        return {
            "id": self.id,
            "queue": self.queue,
            "due_at": self.due_at.isoformat(),
            "task_id": self.task_id,
            "task": self.task,
            "attempt": self.attempt,
            "args": self.args,
            "kwargs": self.kwargs,
        }


@attrs.frozen(kw_only=True)
class DelayedTasks:
    """One page of a queue's delayed tasks.

    Attributes:
        tasks: Soonest due first.
        next_after: The cursor of the next page, or ``None``.
    """

    tasks: list[DelayedTask]
    next_after: str | None


@attrs.frozen(kw_only=True)
class CancelReport:
    """What cancelling a task did.

    Attributes:
        task_id: The task.
        revoked: A revocation record was written (workers will not run it, and stop it if
            running).
        removed: The delayed messages of the task removed from their queues, as
            ``queue/message id``.
        state: The task's state right after (``CANCELLED`` when a delayed copy was removed
            or a worker already acted; ``PENDING`` or another while the request travels).
    """

    task_id: str
    revoked: bool
    removed: list[str]
    state: TaskState

    def to_json(self) -> dict[str, Any]:
        """As ``--json`` prints it."""
        return {
            "task_id": self.task_id,
            "revoked": self.revoked,
            "removed": list(self.removed),
            "state": self.state.value,
        }


def _as_task(app: Chicory, message: DelayedMessage) -> DelayedTask:
    try:
        body = app.codec.decode(message.body, message.headers)
    except MessageDecodeError:
        return DelayedTask(
            id=message.id,
            queue=message.queue,
            due_at=message.due_at,
            task_id=None,
            task=None,
            attempt=0,
            args=[],
            kwargs={},
        )
    return DelayedTask(
        id=message.id,
        queue=message.queue,
        due_at=message.due_at,
        task_id=body.id,
        task=body.task,
        attempt=body.attempt,
        args=list(body.args),
        kwargs=dict(body.kwargs),
    )


async def delayed_tasks(
    app: Chicory, queue: str, *, after: str | None = None, limit: int = 50
) -> DelayedTasks:
    """One page of the delayed tasks of ``queue``, soonest due first.

    Raises:
        CapabilityError: the broker lacks the ``delayed_listing`` capability.
    """
    listing = delayed_listing(await app.connected_broker(), needed_for="listing delayed tasks")
    page = await listing.delayed_page(queue, after=after, limit=limit)
    return DelayedTasks(
        tasks=[_as_task(app, message) for message in page.messages], next_after=page.next_after
    )


async def _find_delayed(
    app: Chicory, listing: DelayedListing, queue: str, task_id: str, scan_limit: int
) -> list[DelayedTask]:
    found: list[DelayedTask] = []
    after: str | None = None
    seen = 0
    while seen < scan_limit:
        page = await listing.delayed_page(queue, after=after, limit=min(500, scan_limit))
        seen += len(page.messages)
        tasks = [_as_task(app, message) for message in page.messages]
        found += [task for task in tasks if task.task_id == task_id]
        if page.next_after is None:
            break
        after = page.next_after
    return found


async def cancel_task(
    app: Chicory,
    task_id: str,
    *,
    queues: Sequence[str],
    ttl: float | None,
    scan_limit: int,
) -> CancelReport:
    """Cancel ``task_id`` (see the module docstring).

    Args:
        app: The app.
        task_id: The task.
        queues: Where to look for a delayed copy (when the broker can list them).
        ttl: Seconds the revocation is kept (default: the app's ``result_ttl``).
        scan_limit: Most delayed messages read per queue looking for it.

    Raises:
        CapabilityError: the result backend keeps no revocation records.
    """
    backend = await app.connected_backend()
    revocations = revocations_of(backend, needed_for="cancelling a task")
    await revocations.revoke(task_id, ttl=app.result_ttl if ttl is None else ttl)
    broker = await app.connected_broker()
    removed: list[str] = []
    if broker.capabilities.delayed_listing and isinstance(broker, DelayedListing):
        for queue in queues:
            for task in await _find_delayed(app, broker, queue, task_id, scan_limit):
                if await broker.remove_delayed(queue, task.id):
                    removed.append(f"{queue}/{task.id}")
                    record = ResultRecord(
                        task_id=task_id,
                        task=task.task or "",
                        state=TaskState.CANCELLED,
                        attempt=task.attempt,
                        updated_at=utcnow(),
                        error=ErrorInfo(
                            type="chicory.errors.TaskCancelledError",
                            message="cancelled while delayed (removed from its queue)",
                        ),
                    )
                    data = encode_record(record)
                    await backend.store(task_id, data, final=True, ttl=app.result_ttl)
    current = await read_record(app, task_id, wait=None)
    return CancelReport(
        task_id=task_id,
        revoked=True,
        removed=removed,
        state=TaskState.PENDING if current is None else current.state,
    )
