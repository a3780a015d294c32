"""A job's paths away from success: failed attempts, retries, cancellations, dead letters.

A failed attempt is retried while its task's :class:`~chicory.retry.RetryPolicy` allows
(:func:`retry_decision`): the next attempt is published with its history and the delivery
settled through the ack strategy. Otherwise the task's ``FAILURE`` record is written first,
then what follows it in a workflow is failed, then the delivery is dead-lettered. A message
that cannot be decoded, names an unknown task or carries bad arguments is dead-lettered
without running; one whose handling raised is dead-lettered naming the error. A cancelled
task is recorded ``CANCELLED`` and acked.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta
from typing import Any

import attrs

from chicory.broker import Delivery
from chicory.clock import utcnow
from chicory.context import Fail, retry_decision
from chicory.envelope import TaskMessage
from chicory.history import HistoryEntry, with_history, with_traceback
from chicory.records import ErrorInfo, ResultRecord, TaskState, encode_record
from chicory.task import Task
from chicory.worker.ack import STRATEGIES, AckStrategy
from chicory.worker.execute import Outcome, describe_error
from chicory.worker.jobbase import JobBase
from chicory.worker.states import JobState, transition

__all__ = ["JobFailures"]

log = logging.getLogger("chicory.worker")


class JobFailures(JobBase):
    """The failure, retry, cancellation and dead-letter paths of a job runner."""

    async def _failed_attempt(
        self,
        delivery: Delivery,
        message: TaskMessage,
        task: Task[..., Any],
        strategy: AckStrategy,
        outcome: Outcome,
    ) -> None:
        exc = outcome.error
        assert exc is not None
        error = describe_error(exc)
        delay, reason = retry_decision(task.retry_policy, exc, message.attempt)
        if delay is not None:
            self._log.retrying(message, delivery.queue, exc, delay)
            await self._retry(delivery, message, task, strategy, error, delay, outcome.runtime)
            return
        transition(JobState.RUNNING, JobState.FAILED)
        if not task.ignore_result:
            record = self._record(message, task, TaskState.FAILURE, error=error)
            if not await self._store(message, record, final=True) and strategy.holds_lease:
                await self._settle(lambda: delivery.nack(requeue=True), "hand back", message)
                return
        await self.followups.failed(delivery, message, error)
        self.failed += 1
        self._log.failed(message, delivery.queue, exc, reason)
        letter = reason if isinstance(exc, Fail) else with_traceback(reason, error.traceback)
        await self._settle(lambda: strategy.fail(delivery, letter), "dead-letter", message)
        await self._release(delivery, message)
        self._emit(
            "chicory_task_failed",
            message,
            task,
            error=error,
            reason=reason,
            runtime=outcome.runtime,
        )
        self._emit("chicory_task_dead_lettered", message, task, reason=reason)

    async def _retry(
        self,
        delivery: Delivery,
        message: TaskMessage,
        task: Task[..., Any],
        strategy: AckStrategy,
        error: ErrorInfo,
        delay: float,
        runtime: float,
    ) -> None:
        now = self._app.utcnow()
        next_message = attrs.evolve(message, attempt=message.attempt + 1)
        failed = HistoryEntry(
            at=now, event="retry", attempt=message.attempt, detail=f"{error.type}: {error.message}"
        )
        # The next attempt keeps every header (the codec signs it anew), plus its history.
        try:
            body, headers = self._app.codec.encode(
                next_message, with_history(delivery.headers, failed)
            )
        except (TypeError, ValueError) as exc:  # MessageTooLargeError is a ValueError
            await self._unsendable_retry(delivery, message, task, strategy, error, exc)
            return
        transition(JobState.RUNNING, JobState.RETRYING)
        self.retried += 1
        not_before = now + timedelta(seconds=delay) if delay > 0 else None
        if not task.ignore_result:
            await self._store(
                message, self._record(message, task, TaskState.RETRY, error=error), final=False
            )
        await self._settle(
            lambda: strategy.retry(delivery, self._app.broker, body, headers, not_before),
            "retry",
            message,
        )
        self._emit("chicory_task_retried", message, task, error=error, delay=delay, runtime=runtime)

    async def _unsendable_retry(
        self,
        delivery: Delivery,
        message: TaskMessage,
        task: Task[..., Any],
        strategy: AckStrategy,
        error: ErrorInfo,
        exc: Exception,
    ) -> None:
        """The next attempt cannot be encoded here (larger than this worker's
        ``max_message_bytes``, say, when the producer allowed more): the task fails for good
        instead of being retried, with both errors in its record and dead letter."""
        transition(JobState.RUNNING, JobState.FAILED)
        reason = (
            f"{error.type}: {error.message} (not retried: its next attempt cannot be "
            f"encoded on this worker: {type(exc).__name__}: {exc})"
        )
        log.error("task %s %s failed: %s", task.name, message.id, reason)
        self.failed += 1
        if not task.ignore_result:
            failure = ErrorInfo(type=error.type, message=reason, traceback=error.traceback)
            record = self._record(message, task, TaskState.FAILURE, error=failure)
            if not await self._store(message, record, final=True) and strategy.holds_lease:
                await self._settle(lambda: delivery.nack(requeue=True), "hand back", message)
                return
        await self._settle(lambda: strategy.fail(delivery, reason), "dead-letter", message)
        await self._release(delivery, message)
        self._emit("chicory_task_dead_lettered", message, task, reason=reason)

    async def _broken(self, delivery: Delivery, exc: Exception) -> None:
        """Dead-letter a delivery whose handling raised ``exc`` (see :meth:`handle`)."""
        log.error(
            "handling delivery %s of queue %s failed; dead-lettering it",
            delivery.message_id,
            delivery.queue,
            exc_info=exc,
        )
        try:
            message: TaskMessage | None = self._decode(delivery.body, delivery.headers)
        except Exception:
            message = None
        reason = f"internal error while handling the message: {type(exc).__name__}: {exc}"
        self.failed += 1
        await self._settle(lambda: delivery.dead_letter(reason), "dead-letter", message)
        with contextlib.suppress(Exception):
            await self._release(delivery, message)
        if "chicory_task_dead_lettered" in self._bus.active:
            with contextlib.suppress(Exception):
                self._bus.emit(
                    "chicory_task_dead_lettered",
                    self._event(message, None, reason=reason, queue=delivery.queue),
                )

    async def _cancelled(
        self, delivery: Delivery, message: TaskMessage, task: Task[..., Any], *, started: bool
    ) -> None:
        """Record a cancelled task ``CANCELLED`` (before or while it ran) and ack it."""
        transition(JobState.RUNNING if started else JobState.RECEIVED, JobState.CANCELLED)
        reason = "cancelled while running" if started else "cancelled before it started"
        log.warning("task %s %s %s", task.name, message.id, reason)
        error = ErrorInfo(type="chicory.errors.TaskCancelledError", message=reason)
        await self.followups.failed(delivery, message, error)
        if not task.ignore_result:
            record = self._record(message, task, TaskState.CANCELLED, error=error)
            if not await self._store(message, record, final=True):
                if STRATEGIES[task.delivery_mode].holds_lease or not started:
                    await self._settle(lambda: delivery.nack(requeue=True), "hand back", message)
                return
        await self._settle(delivery.ack, "ack", message)  # after an at-most-once ack: nothing
        await self._release(delivery, message)

    async def _dead(
        self,
        delivery: Delivery,
        message: TaskMessage | None,
        reason: str,
        *,
        error_type: str | None = None,
    ) -> None:
        transition(JobState.RECEIVED, JobState.DEAD)
        self.failed += 1
        self._log.dead_lettered(message, delivery.queue, delivery.message_id, reason)
        if message is not None and error_type is not None:
            error = ErrorInfo(type=f"chicory.errors.{error_type}", message=reason)
            record = ResultRecord(
                task_id=message.id,
                task=message.task,
                state=TaskState.FAILURE,
                attempt=message.attempt,
                updated_at=utcnow(),
                error=error,
            )
            await self._store(message, encode_record(record), final=True)
            await self.followups.failed(delivery, message, error)
        await self._settle(lambda: delivery.dead_letter(reason), "dead-letter", message)
        await self._release(delivery, message)
        if "chicory_task_dead_lettered" in self._bus.active:
            self._bus.emit(
                "chicory_task_dead_lettered",
                self._event(message, None, reason=reason, queue=delivery.queue),
            )
