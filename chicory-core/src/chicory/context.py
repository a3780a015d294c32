"""What a running task can see and do: :class:`TaskContext`, and the ``Retry``/``Fail`` signals."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, NoReturn, Protocol

from chicory.clock import utcnow
from chicory.envelope import TaskMessage
from chicory.errors import ResultValidationError
from chicory.records import TaskProgress

if TYPE_CHECKING:
    from chicory.retry import RetryPolicy

__all__ = ["CancelToken", "Fail", "ProgressReporter", "Retry", "TaskContext", "retry_decision"]

_EMPTY: Final[Mapping[str, Any]] = MappingProxyType({})


class Retry(Exception):
    """Raised by :meth:`TaskContext.retry` to ask the worker for another attempt.

    Attributes:
        countdown: Seconds to wait before the retry, or ``None`` for the policy's backoff.
        reason: Why, recorded with the retry.
    """

    def __init__(self, countdown: float | None = None, reason: str | None = None) -> None:
        self.countdown = countdown
        self.reason = reason or "retry requested by the task"
        super().__init__(self.reason)


class Fail(Exception):
    """Raised by :meth:`TaskContext.fail` to fail the task now, without any retry."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class CancelToken:
    """Set by the worker when a cancel request reaches the running task that holds it.

    One per run; the worker sets it from its event loop, a sync task reads it from its
    thread (a plain attribute: reading it is safe from any thread).
    """

    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def __repr__(self) -> str:
        return f"<CancelToken cancelled={self.cancelled}>"


class ProgressReporter(Protocol):
    """Where a run's progress goes: the worker's result backend (see
    :mod:`chicory.worker.followups`)."""

    async def store_progress(self, message: TaskMessage, progress: TaskProgress) -> None:
        """Store ``progress`` as the record of ``message``'s task (from the event loop)."""
        ...

    def store_progress_from_thread(self, message: TaskMessage, progress: TaskProgress) -> None:
        """The same from a sync task's thread: blocks until it is stored."""
        ...


def _progress(value: float, meta: Mapping[str, Any] | None) -> TaskProgress:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"progress must be a finite number, got {value!r}")
    if meta is not None and not isinstance(meta, Mapping):
        raise TypeError(f"progress meta must be a mapping (or None), got {type(meta).__name__}")
    return TaskProgress(value=float(value), meta=None if meta is None else dict(meta))


class TaskContext:
    """What one run of a task can see: declare a first parameter annotated ``TaskContext``
    to receive it. Execute middleware receives it too (see :mod:`chicory.middleware`).

    Read-only. The worker builds one per run; build one yourself to call a task function
    directly in a unit test (every argument but ``task_id`` and ``task_name`` has a
    default).

    Args:
        task_id: The task's id, stable across retries (use it as an idempotency key).
        task_name: The registered task name.
        attempt: 1 for the first run, 2 for the first retry, and so on.
        retries_left: How many retries the policy still allows after this attempt.
        queue: The queue the task came from.
        delivery_count: How often the broker delivered this message (> 1 after a crash).
        headers: The message's headers (see :mod:`chicory.headers`).
        resources: What the worker's middleware built at start-up for tasks to share.
        worker_id: The id of the worker running the task.
        args: The positional arguments as sent (JSON values).
        kwargs: The keyword arguments as sent (JSON values).
        created_at: When the first attempt was published (default: now).
        eta: When the task was due, if it was delayed.
        retry_policy: The task's retry policy (default: one allowing ``retries_left``
            more retries).
        cancel_token: Where the worker signals a cancel request (read :attr:`cancelled`).
    """

    __slots__ = (
        "_cancel_token",
        "_delivery_count",
        "_headers",
        "_message",
        "_policy",
        "_progress",
        "_queue",
        "_reporter",
        "_resources",
        "_worker_id",
    )

    _message: TaskMessage
    _queue: str
    _delivery_count: int
    _headers: Mapping[str, str]
    _resources: Mapping[str, Any]
    _worker_id: str
    _policy: RetryPolicy
    _cancel_token: CancelToken
    _reporter: ProgressReporter | None
    _progress: TaskProgress | None

    def __init__(
        self,
        *,
        task_id: str,
        task_name: str,
        attempt: int = 1,
        retries_left: int = 0,
        queue: str = "default",
        delivery_count: int = 1,
        headers: Mapping[str, str] | None = None,
        resources: Mapping[str, Any] | None = None,
        worker_id: str = "",
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        created_at: datetime | None = None,
        eta: datetime | None = None,
        retry_policy: RetryPolicy | None = None,
        cancel_token: CancelToken | None = None,
    ) -> None:
        from chicory.retry import RetryPolicy

        self._message = TaskMessage(
            id=task_id,
            task=task_name,
            args=list(args),
            kwargs=dict(kwargs or {}),
            attempt=attempt,
            queue=queue,
            created_at=created_at or utcnow(),
            eta=eta,
        )
        self._queue = queue
        self._delivery_count = delivery_count
        self._headers = MappingProxyType(dict(headers or {}))
        self._resources = _EMPTY if resources is None else resources
        self._worker_id = worker_id
        self._policy = retry_policy or RetryPolicy(max_retries=max(0, attempt - 1 + retries_left))
        self._cancel_token = cancel_token or CancelToken()
        self._reporter = None
        self._progress = None

    @classmethod
    def _of(
        cls,
        message: TaskMessage,
        queue: str,
        delivery_count: int,
        headers: Mapping[str, str],
        resources: Mapping[str, Any],
        worker_id: str,
        policy: RetryPolicy,
        cancel_token: CancelToken,
        reporter: ProgressReporter | None = None,
    ) -> TaskContext:
        """The worker's constructor: a decoded message and where it came from, no copies."""
        context = cls.__new__(cls)
        context._message = message
        context._queue = queue
        context._delivery_count = delivery_count
        context._headers = headers
        context._resources = resources
        context._worker_id = worker_id
        context._policy = policy
        context._cancel_token = cancel_token
        context._reporter = reporter
        return context

    def __repr__(self) -> str:
        return (
            f"<TaskContext {self.task_name}[{self.task_id}] attempt={self.attempt} "
            f"queue={self._queue!r}>"
        )

    @property
    def task_id(self) -> str:
        """The task's id, stable across retries (use it as an idempotency key)."""
        return self._message.id

    @property
    def task_name(self) -> str:
        """The registered task name."""
        return self._message.task

    @property
    def attempt(self) -> int:
        """1 for the first run, 2 for the first retry, and so on."""
        return self._message.attempt

    @property
    def retries_left(self) -> int:
        """How many retries the policy still allows after this attempt."""
        return self._policy.retries_left(self._message.attempt)

    @property
    def queue(self) -> str:
        """The queue the task came from."""
        return self._queue

    @property
    def delivery_count(self) -> int:
        """How often the broker delivered this message (> 1 after a crash or a hand-back)."""
        return self._delivery_count

    @property
    def headers(self) -> Mapping[str, str]:
        """The message's headers: those the producer or its middleware set, and Chicory's
        own (named ``chicory-*``)."""
        return self._headers

    @property
    def resources(self) -> Mapping[str, Any]:
        """What the worker's middleware built at start-up for tasks to share (a database
        pool, an HTTP client), by name: ``Worker.resources`` seen read-only."""
        return self._resources

    @property
    def worker_id(self) -> str:
        """The id of the worker running the task."""
        return self._worker_id

    @property
    def args(self) -> Sequence[Any]:
        """The positional arguments as sent (JSON values, before validation)."""
        return self._message.args

    @property
    def kwargs(self) -> Mapping[str, Any]:
        """The keyword arguments as sent (JSON values, before validation)."""
        return self._message.kwargs

    @property
    def created_at(self) -> datetime:
        """Aware-UTC time the task's first attempt was published."""
        return self._message.created_at

    @property
    def eta(self) -> datetime | None:
        """Aware-UTC time the task was due, if it was published with a delay."""
        return self._message.eta

    @property
    def cancel_token(self) -> CancelToken:
        """Where the worker signals a cancel request (read :attr:`cancelled`)."""
        return self._cancel_token

    @property
    def cancelled(self) -> bool:
        """Whether this run was asked to stop (``AsyncResult.cancel()``, ``chicory cancel``).

        An async task is also cancelled at its next ``await``, so it sees this in its
        cleanup (``except``/``finally``); a sync task cannot be interrupted and should check
        it between steps and return early. Either way the run ends ``CANCELLED``.
        """
        return self._cancel_token.cancelled

    def idempotency_key(self, step: str = "") -> str:
        """A key naming one logical operation of this task: the same on every retry and
        every redelivery of this task id, different for each ``step`` and each task id.

        Hand it to an external API's idempotency header or store it under a unique
        constraint, so an operation repeated by an at-least-once rerun takes effect once.

        Args:
            step: Which operation of the task (``"charge"``, ``"email"``...).

        Returns:
            32 hex digits (the first 128 bits of a SHA-256 of the task id and ``step``).
        """
        return hashlib.sha256(f"{self._message.id}\x00{step}".encode()).hexdigest()[:32]

    async def set_progress(self, value: float, meta: Mapping[str, Any] | None = None) -> None:
        """Report how far this run has got; the caller reads it with
        ``await result.progress()`` (and ``chicory result`` shows it).

        Written at once as the task's record (state ``STARTED``), unless the task was
        declared ``ignore_result=True`` (then it is kept on the context only). A write the
        result backend refuses is logged, not raised: progress is advisory.

        Args:
            value: Any finite number, on the task's own scale (a fraction, a count...).
            meta: JSON details (``{"done": 40, "total": 100}``).

        Raises:
            ValueError: ``value`` is not a finite number.
            TypeError: ``meta`` is not a mapping, or is not JSON-encodable.
        """
        progress = _progress(value, meta)
        self._progress = progress
        reporter = getattr(self, "_reporter", None)
        if reporter is not None:
            await reporter.store_progress(self._message, progress)

    def set_progress_sync(self, value: float, meta: Mapping[str, Any] | None = None) -> None:
        """:meth:`set_progress` for a sync task, called from its thread; returns once the
        progress is stored. (An async task awaits :meth:`set_progress` instead.)

        Raises:
            ValueError: ``value`` is not a finite number.
            TypeError: ``meta`` is not a mapping, or is not JSON-encodable.
            RuntimeError: called from the worker's event loop (in an async task).
        """
        progress = _progress(value, meta)
        self._progress = progress
        reporter = getattr(self, "_reporter", None)
        if reporter is not None:
            reporter.store_progress_from_thread(self._message, progress)

    @property
    def progress(self) -> TaskProgress | None:
        """The last progress this run reported, or ``None``."""
        return getattr(self, "_progress", None)

    def will_retry(self, exc: BaseException) -> bool:
        """Whether the worker retries this task if its run ends with ``exc``, by its retry
        policy and the retries left (a :class:`Retry` with retries left: yes; a
        :class:`Fail`: no).

        Useful in execute middleware, to tell an attempt that will be retried from a task
        that fails for good.
        """
        return retry_decision(self._policy, exc, self._message.attempt)[0] is not None

    def retry(self, countdown: float | None = None, reason: str | None = None) -> NoReturn:
        """Stop this attempt and run the task again after ``countdown`` seconds.

        Bounded by the policy's ``max_retries``: once none are left the task fails.
        """
        raise Retry(countdown=countdown, reason=reason)

    def fail(self, reason: str) -> NoReturn:
        """Stop and fail the task now; it is dead-lettered with ``reason`` and never retried."""
        raise Fail(reason)


def retry_decision(
    policy: RetryPolicy, exc: BaseException, attempt: int
) -> tuple[float | None, str]:
    """Decide what a failed attempt leads to.

    Returns:
        ``(delay, "")`` when the task is retried after ``delay`` seconds, or
        ``(None, reason)`` when it fails for good (``reason`` goes into the dead letter).
    """
    if isinstance(exc, Fail):
        return None, f"failed by the task: {exc.reason}"
    if isinstance(exc, Retry):
        if attempt <= policy.max_retries:
            return (exc.countdown if exc.countdown is not None else policy.delay_for(attempt)), ""
        return None, f"retry requested but no retries left (max_retries={policy.max_retries})"
    described = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ResultValidationError):
        return None, str(exc)
    if policy.should_retry(exc, attempt):
        return policy.delay_for(attempt), ""
    if attempt > policy.max_retries and policy.max_retries > 0:
        return None, f"{described} (retries exhausted after {attempt} attempts)"
    return None, f"{described} (not retried)"
