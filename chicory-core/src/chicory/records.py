"""What core writes to a result backend: task records and worker heartbeats."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, Final, TypeVar

import attrs
import orjson

from chicory.envelope import explain, make_wire_converter, to_json
from chicory.errors import ResultBackendError

__all__ = [
    "NOT_SUCCESS",
    "ErrorInfo",
    "ResultRecord",
    "TaskProgress",
    "TaskState",
    "WorkerInfo",
    "decode_record",
    "encode_progress_record",
    "encode_record",
    "progress_of",
    "success_result",
]


class TaskState(enum.StrEnum):
    """A task's state as seen through its result record.

    ``PENDING`` means no record exists (not yet run, unknown, or expired). ``SUCCESS``,
    ``FAILURE`` and ``CANCELLED`` are final.
    """

    PENDING = "PENDING"
    STARTED = "STARTED"
    RETRY = "RETRY"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    CANCELLED = "CANCELLED"

    @property
    def final(self) -> bool:
        """Whether no further state will follow."""
        return self in _FINAL


_FINAL = frozenset({TaskState.SUCCESS, TaskState.FAILURE, TaskState.CANCELLED})


@attrs.frozen(kw_only=True)
class ErrorInfo:
    """A remote exception, as text.

    Attributes:
        type: Qualified name of the exception class.
        message: ``str()`` of the exception.
        traceback: The formatted traceback, if recorded.
    """

    type: str
    message: str
    traceback: str | None = None


@attrs.frozen(kw_only=True)
class TaskProgress:
    """How far a running task says it has got (``ctx.set_progress``).

    Attributes:
        value: The task's own measure: a fraction, a percentage, items done...
        meta: JSON details the task added (``None`` if none).
    """

    value: float
    meta: Any = None


@attrs.frozen(kw_only=True)
class ResultRecord:
    """The stored record of one task.

    Attributes:
        task_id: The task's id.
        task: The task's name.
        state: The state this record reports.
        attempt: The attempt that wrote it (1-based; 0 for a workflow step a failure left
            unrun).
        result: The return value (JSON), for ``SUCCESS``.
        error: The exception, for ``FAILURE`` and ``RETRY``; for ``CANCELLED``, why it was
            cancelled (type ``chicory.errors.TaskCancelledError``).
        updated_at: Aware-UTC time of the write.

    A ``STARTED`` record written by ``ctx.set_progress`` also carries a ``progress`` key
    (:func:`encode_progress_record`, read back with :func:`progress_of`); it is kept out of
    this class so the record every task writes costs nothing more.
    """

    task_id: str
    task: str
    state: TaskState
    attempt: int
    updated_at: datetime
    result: Any = None
    error: ErrorInfo | None = None


@attrs.frozen(kw_only=True)
class WorkerInfo:
    """A worker heartbeat.

    Attributes:
        worker_id: Unique id of the worker process.
        hostname: Host it runs on.
        pid: Its process id.
        queues: Queues it consumes.
        concurrency: Its concurrency limit.
        started_at: When it started.
        seen_at: When this heartbeat was written.
        processed: Deliveries it has handled so far.
        running: Tasks running at heartbeat time.
        failed: Tasks it dead-lettered so far (failed for good, or poison messages).
        retried: Failed attempts it published a retry for so far.
        heartbeat_interval: Seconds between its heartbeats (a record older than about
            this is stale).
    """

    worker_id: str
    hostname: str
    pid: int
    queues: list[str]
    concurrency: int
    started_at: datetime
    seen_at: datetime
    processed: int = 0
    running: int = 0
    failed: int = 0
    retried: int = 0
    heartbeat_interval: float = 0.0


_converter = make_wire_converter()
_R = TypeVar("_R", ResultRecord, WorkerInfo)


def encode_record(record: ResultRecord | WorkerInfo) -> bytes:
    """Encode a record for a result backend.

    Raises:
        TypeError: the task result is not JSON-encodable.
    """
    if type(record) is ResultRecord:  # the hot path: one per task, built without the converter
        error = record.error
        return to_json(
            {
                "task_id": record.task_id,
                "task": record.task,
                "state": record.state.value,
                "attempt": record.attempt,
                "updated_at": record.updated_at,
                "result": record.result,
                "error": None
                if error is None
                else {"type": error.type, "message": error.message, "traceback": error.traceback},
            }
        )
    return to_json(_converter.unstructure(record))


def decode_record(data: bytes, kind: type[_R]) -> _R:
    """Decode a record written by :func:`encode_record`.

    Raises:
        ResultBackendError: the stored bytes are not a record of ``kind``.
    """
    try:
        raw = orjson.loads(data)
        if kind is ResultRecord:  # the hot path: one per awaited result
            success = _success_fast(raw)
            if success is not None:
                return success
        return _converter.structure(raw, kind)
    except Exception as exc:
        raise ResultBackendError(
            f"stored {kind.__name__} cannot be decoded: {explain(exc)}"
        ) from exc


def _success_fast(raw: Any) -> ResultRecord | None:
    """A well-formed ``SUCCESS`` record built without the converter; ``None`` for anything
    else (the converter then decides, and names what is wrong)."""
    updated_at = _success_time(raw)
    if updated_at is None:
        return None
    return ResultRecord(
        task_id=raw["task_id"],
        task=raw["task"],
        state=TaskState.SUCCESS,
        attempt=raw["attempt"],
        updated_at=updated_at,
        result=raw.get("result"),
    )


def _success_time(raw: Any) -> datetime | None:
    """The ``updated_at`` of a well-formed ``SUCCESS`` record (every field of the type
    :class:`ResultRecord` needs); ``None`` for anything else."""
    if type(raw) is not dict or raw.get("state") != "SUCCESS" or raw.get("error") is not None:
        return None
    if not (
        type(raw.get("task_id")) is str
        and type(raw.get("task")) is str
        and type(raw.get("attempt")) is int
    ):
        return None
    updated = raw.get("updated_at")
    if type(updated) is not str:
        return None
    try:  # parse_aware, inlined: one per awaited result
        moment = _fromisoformat(updated)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


_fromisoformat = datetime.fromisoformat

NOT_SUCCESS: Final[Any] = object()
"""What :func:`success_result` returns for anything but a well-formed ``SUCCESS`` record."""


def success_result(data: bytes) -> Any:
    """The result of a stored record if it is a well-formed ``SUCCESS`` one (what
    :func:`decode_record` would accept as such), without building the record; else
    :data:`NOT_SUCCESS` (then :func:`decode_record` decides, and names what is wrong).

    ``AsyncResult.get`` needs only the value of a successful run: one per awaited result.
    """
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError:
        return NOT_SUCCESS
    if _success_time(raw) is None:
        return NOT_SUCCESS
    return raw.get("result")


def encode_progress_record(record: ResultRecord, progress: TaskProgress) -> bytes:
    """Encode a (``STARTED``) record carrying ``progress`` under its ``progress`` key.

    Raises:
        TypeError: the progress's meta is not JSON-encodable.
    """
    raw = _converter.unstructure(record)
    raw["progress"] = {"value": progress.value, "meta": progress.meta}
    return to_json(raw)


def progress_of(data: bytes) -> TaskProgress | None:
    """The progress a stored record reports: ``None`` for a final record, or one without.

    Raises:
        ResultBackendError: the stored bytes are not a record.
    """
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ResultBackendError(f"stored ResultRecord cannot be decoded: {exc}") from exc
    if type(raw) is not dict or raw.get("state") in _FINAL_NAMES:
        return None
    progress = raw.get("progress")
    if type(progress) is not dict:
        return None
    value = progress.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return TaskProgress(value=float(value), meta=progress.get("meta"))


_FINAL_NAMES = frozenset(state.value for state in _FINAL)
