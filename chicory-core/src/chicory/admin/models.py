"""What the admin layer returns: plain, frozen, JSON-ready records.

Every model has :meth:`to_json` (used by ``chicory ... --json`` and the dashboard's JSON
endpoints); datetimes become ISO-8601 strings in UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from chicory.history import HistoryEntry
from chicory.records import ErrorInfo, TaskProgress, TaskState

__all__ = [
    "ActionReport",
    "DeadLetterFilter",
    "DeadLetterInfo",
    "DeadLetterListing",
    "DeadLetterRef",
    "QueueInfo",
    "TaskInfo",
    "WorkerStatus",
]


def _plain(value: Any) -> Any:
    """``value`` with datetimes as ISO text and attrs records as dicts, recursively."""
    if isinstance(value, datetime):
        return value.isoformat()
    if attrs.has(type(value)):
        return {f.name: _plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


class _JSON:
    def to_json(self) -> dict[str, Any]:
        """The record as plain JSON values."""
        plain: dict[str, Any] = _plain(self)
        return plain


@attrs.frozen(kw_only=True)
class QueueInfo(_JSON):
    """One queue, as ``chicory queues`` shows it.

    Attributes:
        name: The queue name.
        ready: Messages waiting to be delivered now.
        in_flight: Delivered and not yet settled.
        delayed: Waiting for their time (countdowns, retry backoffs).
        dead: Dead letters.
        consumers: Live consumers the broker counts (``None`` when it cannot tell).
        workers: Live workers whose heartbeat names the queue.
        oldest_ready_at: When the oldest ready message became ready, if any is.
        oldest_ready_age: Seconds it has waited since, at the time of the reading.
    """

    name: str
    ready: int
    in_flight: int
    delayed: int
    dead: int
    consumers: int | None
    workers: int
    oldest_ready_at: datetime | None = None
    oldest_ready_age: float | None = None


@attrs.frozen(kw_only=True)
class WorkerStatus(_JSON):
    """One live worker, from its latest heartbeat.

    Attributes:
        worker_id: Its unique id.
        hostname: Host it runs on.
        pid: Its process id.
        queues: Queues it consumes.
        concurrency: Its concurrency limit.
        active: Tasks running at its latest heartbeat.
        processed: Deliveries it has handled since it started.
        failed: Tasks it dead-lettered since it started.
        retried: Failed attempts it retried since it started.
        started_at: When it started.
        last_seen: When it wrote its latest heartbeat.
        age: Seconds since ``last_seen``, at the time of the reading.
        heartbeat_interval: Seconds between its heartbeats (0 if it did not say).
    """

    worker_id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    active: int
    processed: int
    failed: int
    retried: int
    started_at: datetime
    last_seen: datetime
    age: float
    heartbeat_interval: float


@attrs.frozen(kw_only=True)
class DeadLetterRef(_JSON):
    """Where a dead letter is: its queue and id."""

    queue: str
    id: str


@attrs.frozen(kw_only=True)
class DeadLetterInfo(_JSON):
    """A dead letter, with its message read as a task.

    Attributes:
        id: The broker's id of the dead letter.
        queue: Its queue.
        dead_at: When it was dead-lettered.
        reason: Why, in one line (or a few).
        traceback: The end of the failure's traceback, when the task raised.
        delivery_count: How often the broker had delivered the message.
        task: The task name, when the body names one.
        task_id: The task id, when the body names one.
        attempt: The attempt that failed, when the body is a readable envelope.
        args: Positional arguments, when readable.
        kwargs: Keyword arguments, when readable.
        decode_error: Why the body is not a readable (and, with signing, correctly signed)
            envelope; ``None`` when it is one.
        history: The task's past, from the ``chicory-history`` header.
        headers: The message headers.
        body_size: Bytes in the body.
    """

    id: str
    queue: str
    dead_at: datetime
    reason: str
    traceback: str | None
    delivery_count: int
    task: str | None
    task_id: str | None
    attempt: int | None
    args: list[Any] | None
    kwargs: dict[str, Any] | None
    decode_error: str | None
    history: list[HistoryEntry]
    headers: dict[str, str]
    body_size: int

    @property
    def ref(self) -> DeadLetterRef:
        """Its queue and id."""
        return DeadLetterRef(queue=self.queue, id=self.id)

    @property
    def replays(self) -> int:
        """How many times it was replayed before."""
        return sum(1 for entry in self.history if entry.event == "replay")

    @property
    def short_traceback(self) -> str | None:
        """The last frame line of the traceback and the exception line, or ``None``."""
        if not self.traceback:
            return None
        lines = [line.strip() for line in self.traceback.splitlines() if line.strip()]
        frames = [line for line in lines if line.startswith("File ")]
        return " | ".join([*frames[-1:], lines[-1]])


@attrs.frozen(kw_only=True)
class DeadLetterFilter:
    """Which dead letters to list, replay or delete.

    Attributes:
        queues: Only these queues (empty: every queue).
        task: Only this task name; ``*`` and ``?`` match like shell wildcards.
        task_id: Only this task id.
        reason: Only letters whose reason (or traceback) contains this text, any case.
        since: Only letters dead-lettered at or after this time.
        until: Only letters dead-lettered before this time.
    """

    queues: tuple[str, ...] = ()
    task: str | None = None
    task_id: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def reads_bodies(self) -> bool:
        """Whether matching needs more than the broker's own selection (queue, time)."""
        return bool(self.task or self.task_id or self.reason)


@attrs.frozen(kw_only=True)
class DeadLetterListing(_JSON):
    """One page of dead letters across queues.

    Attributes:
        letters: The matching dead letters, oldest first (or newest first if asked).
        cursor: Pass it back for the next page; ``None`` when there is no more.
        scanned: How many dead letters were read to fill the page (filters on task, id and
            reason are applied by Chicory, so it may read more than it returns).
    """

    letters: list[DeadLetterInfo]
    cursor: str | None
    scanned: int


@attrs.frozen(kw_only=True)
class ActionReport(_JSON):
    """What a replay or delete of several dead letters did.

    Attributes:
        action: ``"replay"`` or ``"delete"``.
        matched: Dead letters selected.
        done: Those replayed (or deleted).
        missing: Those gone before the action reached them (replayed or deleted meanwhile).
        failed: Those the action failed on, with why (they stay dead letters).
        dry_run: Nothing was changed; ``matched`` says what would have been.
        refs: The dead letters selected.
        task_ids: The task ids of those replayed, in order (for ``chicory result``).
    """

    action: str
    matched: int
    done: int
    missing: int
    failed: list[tuple[DeadLetterRef, str]]
    dry_run: bool
    refs: list[DeadLetterRef]
    task_ids: list[str] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class TaskInfo(_JSON):
    """What is known of one task id.

    Attributes:
        task_id: The id.
        state: Its state (``PENDING`` when no record exists: unknown, not yet run, or
            expired).
        task: The task name, when known.
        attempt: The attempt that wrote the record.
        updated_at: When the record was written.
        result: The return value (``SUCCESS``).
        error: The error (``RETRY``, ``FAILURE``), with its traceback.
        dead_letter: The task's dead letter, when it failed for good and is still one.
        history: The task's past, from its dead letter's history header.
        progress: What the running task last reported with ``ctx.set_progress``.
    """

    task_id: str
    state: TaskState
    task: str | None = None
    attempt: int | None = None
    updated_at: datetime | None = None
    result: Any = None
    error: ErrorInfo | None = None
    dead_letter: DeadLetterInfo | None = None
    history: list[HistoryEntry] = attrs.field(factory=list)
    progress: TaskProgress | None = None
