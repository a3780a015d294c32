"""What a running task can see and do: :class:`TaskContext`, and the ``Retry``/``Fail`` signals."""

from __future__ import annotations

from typing import NoReturn

import attrs

__all__ = ["CancelToken", "Fail", "Retry", "TaskContext"]


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


@attrs.frozen(kw_only=True)
class TaskContext:
    """Declared as a task's first parameter (annotated ``TaskContext``) to receive this.

    Attributes:
        task_id: The task's id, stable across retries (use it as an idempotency key).
        task_name: The registered task name.
        attempt: 1 for the first run, 2 for the first retry, and so on.
        retries_left: How many retries the policy still allows after this attempt.
        queue: The queue the task came from.
        delivery_count: How often the broker delivered this message (> 1 after a crash).
        cancel_token: Where the worker signals a cancel request (read :attr:`cancelled`).
    """

    task_id: str
    task_name: str
    attempt: int
    retries_left: int
    queue: str
    delivery_count: int = 1
    cancel_token: CancelToken = attrs.field(factory=CancelToken, repr=False, eq=False)

    @property
    def cancelled(self) -> bool:
        """Whether this run was asked to stop (``AsyncResult.cancel()``, ``chicory cancel``).

        An async task is also cancelled at its next ``await``, so it sees this in its
        cleanup (``except``/``finally``); a sync task cannot be interrupted and should check
        it between steps and return early. Either way the run ends ``CANCELLED``.
        """
        return self.cancel_token.cancelled

    def retry(self, countdown: float | None = None, reason: str | None = None) -> NoReturn:
        """Stop this attempt and run the task again after ``countdown`` seconds.

        Bounded by the policy's ``max_retries``: once none are left the task fails.
        """
        raise Retry(countdown=countdown, reason=reason)

    def fail(self, reason: str) -> NoReturn:
        """Stop and fail the task now; it is dead-lettered with ``reason`` and never retried."""
        raise Fail(reason)
