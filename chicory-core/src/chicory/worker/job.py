"""One delivery's path through the worker, driven by the state machine.

``JobRunner.handle`` takes a delivery from RECEIVED to a terminal state
(:mod:`chicory.worker.states`), calling the ack strategy of the task's delivery mode
(:mod:`chicory.worker.ack`) at each step and writing result records in the order the delivery
modes require: the result is stored before an at-least-once ack. Settles and result writes are
shielded from cancellation and each try is bounded by ``settle_timeout``; one that fails
because the broker could not be reached is tried again until it goes through (for at most
``settle_timeout`` more once the worker stops), so a drain can neither lose nor hang them.

A task cancelled before it starts (its id is in ``revoked``, :mod:`chicory.revocation`) is
not run: it is recorded ``CANCELLED`` and acked. A run cancelled while it runs
(:mod:`chicory.worker.slots`) ends ``CANCELLED`` whatever its function did: no retry, no
dead letter; its delivery is acked (an at-most-once one was acked before it ran).

Each meaningful event writes a line (:mod:`chicory.worker.tasklog`); the DEBUG ones cost one
attribute test when DEBUG is off. A run goes through the app's execute middleware
(:mod:`chicory.middleware`) only when the app has any: with none, the function is called as
it always was, and a :class:`~chicory.context.TaskContext` is built only for tasks that take
one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from chicory.backend import StoredResult
from chicory.broker import Delivery
from chicory.clock import utcnow
from chicory.context import CancelToken, Fail, Retry, TaskContext
from chicory.envelope import TaskMessage
from chicory.errors import (
    ArgumentValidationError,
    MessageDecodeError,
    ResultTooLargeError,
    ResultValidationError,
    TaskCancelledError,
)
from chicory.headers import FLOW_HEADER
from chicory.history import HistoryEntry, with_history, with_traceback
from chicory.middleware import ExecuteChain
from chicory.plugins.events import TaskEvent
from chicory.records import ErrorInfo, ResultRecord, TaskState, encode_record
from chicory.retry import RetryPolicy
from chicory.task import Task
from chicory.timelimits import NO_LIMITS, limits_for
from chicory.unique import UNIQUE_HEADER, UniqueEnqueue
from chicory.worker import resend
from chicory.worker.ack import STRATEGIES, AckStrategy
from chicory.worker.execute import Outcome, describe_error, execute, execute_chain
from chicory.worker.followups import Followups
from chicory.worker.settler import Settler
from chicory.worker.slots import RunnerSlot
from chicory.worker.states import JobState, transition
from chicory.worker.tasklog import TaskLog
from chicory.worker.threads import SyncThreads
from chicory.workflow.links import AGAIN_HEADER

if TYPE_CHECKING:
    from chicory.worker.worker import Worker

__all__ = ["JobRunner", "retry_decision", "too_large"]

log = logging.getLogger("chicory.worker")

# The states every task passes through, read once: a member lookup on an Enum class goes
# through its metaclass (tens of nanoseconds each in 3.11, several per task).
_RECEIVED, _RUNNING, _SUCCEEDED = JobState.RECEIVED, JobState.RUNNING, JobState.SUCCEEDED


class JobRunner:
    """Runs deliveries for one worker.

    Args:
        worker: The owning worker (for its app, bus and stop flags).
        settle_timeout: Seconds a shielded settle or result write may take.
    """

    def __init__(self, worker: Worker, *, settle_timeout: float) -> None:
        self._worker = worker
        self._app = worker.app
        self._bus = worker.bus
        self._settle_timeout = settle_timeout
        self._limiter = anyio.CapacityLimiter(worker.sync_threads)
        self.threads = SyncThreads()
        self.revoked: dict[str, float] = {}
        """Revoked task ids -> expiry (fed by :mod:`chicory.worker.revocations`)."""
        self.slots: list[RunnerSlot] = []
        self._leased: set[Delivery] = set()
        self._decode = worker.app.codec.decode
        self._tasks = worker.app.tasks
        self._log = TaskLog(worker.worker_id)
        self._debug = self._log.debug
        self._worker_id = worker.worker_id
        self._resources = worker.resources_view
        chain = ExecuteChain(worker.app.middleware)
        self._chain: ExecuteChain | None = chain if chain else None
        self.settler: Settler | None = None
        self.followups = Followups(self)
        self.fan_out: Callable[[], None] = lambda: None
        self.processed = 0
        self.running = 0
        self.failed = 0
        self.retried = 0

    def leased(self) -> list[Delivery]:
        """Deliveries held by running at-least-once tasks (their leases need renewal)."""
        return list(self._leased)

    def cancel_running(self, task_id: str) -> None:
        """Cancel the run of ``task_id`` if one of this worker's runners is running it."""
        for slot in self.slots:
            if slot.task_id == task_id:
                log.warning("task %s: cancel requested while it runs; stopping it", task_id)
                slot.cancel()

    async def handle(self, delivery: Delivery, slot: RunnerSlot | None = None) -> bool:
        """Take one delivery to a terminal state. Never raises except on cancellation.

        Whatever goes wrong on the way from the delivery to its settle (an error in Chicory,
        a middleware, a broker's reply) ends in a dead letter naming the error: a message
        never stops the worker, nor comes back to stop the next one.

        Returns:
            True if the delivery was handed to the settler, which reports when it is settled;
            False if it is settled already. The caller counts it in ``processed``.
        """
        try:  # (no coroutine of its own: this runs for every task)
            state = _RECEIVED
            try:
                headers = delivery.headers
                message = self._decode(delivery.body, headers)
            except MessageDecodeError as exc:
                await self._dead(delivery, None, f"undecodable message: {exc}")
                return False
            if self._debug:
                self._log.received(message, delivery.queue)
            redelivered = delivery.delivery_count > 1
            if redelivered:
                self._redelivered(message, delivery)
            if self._bus.active:
                self._emit("chicory_task_received", message)
            task = self._tasks.get(message.task)
            if task is None:
                reason = (
                    f"unknown task {message.task!r}: no task of that name is registered on this "
                    "worker's app (import the module that defines it, or check the name)"
                )
                await self._dead(delivery, message, reason, error_type="UnknownTaskError")
                return False
            try:
                args, kwargs = task.signature.load(
                    message.args, message.kwargs, task.validation_mode
                )
            except ArgumentValidationError as exc:
                await self._dead(delivery, message, str(exc), error_type="ArgumentValidationError")
                return False
            strategy = STRATEGIES[task.delivery_mode]
            revoked = self.revoked
            if revoked and message.id in revoked:
                await self._cancelled(delivery, message, task, started=False)
                return False
            if self._worker.stopping:
                state = transition(state, JobState.CANCELLED)
                await self._settle(lambda: delivery.nack(requeue=True), "hand back", message)
                return False
            if (
                (redelivered and strategy.holds_lease) or (headers and AGAIN_HEADER in headers)
            ) and await self.followups.done_already(delivery, message, task):
                return False
            settler = self.settler
            assert settler is not None
            if strategy.acts_before_run:
                self.fan_out()  # the runners of the other waiting deliveries join this batch
                if not await strategy.before_run(delivery, settler):
                    state = transition(state, JobState.CANCELLED)
                    self._log.not_run(message, delivery.queue)
                    return False
            state = transition(state, _RUNNING)
            outcome = await self._run(
                delivery, message, task, strategy, args, kwargs, slot, headers
            )
            if slot is not None and slot.cancel_requested:
                await self._cancelled(delivery, message, task, started=True)
                return False
            if outcome.error is None:
                flow = headers.get(FLOW_HEADER) if headers else None
                if flow is not None:
                    failed = await self.followups.succeed(
                        delivery, message, task, strategy, outcome, flow
                    )
                    if failed is None:
                        return False
                else:
                    failed = self._succeed(delivery, message, task, strategy, outcome, settler)
                    if failed is None:
                        if headers and UNIQUE_HEADER in headers:
                            self._release_once_settled(settler, delivery, message)
                        return True
                outcome = failed
            await self._failed_attempt(delivery, message, task, strategy, outcome)
            return False
        except Exception as exc:  # not a cancellation: those end the worker on purpose
            await self._broken(delivery, exc)
            return False

    async def _run(
        self,
        delivery: Delivery,
        message: TaskMessage,
        task: Task[..., Any],
        strategy: AckStrategy,
        args: list[Any],
        kwargs: dict[str, Any],
        slot: RunnerSlot | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Outcome:
        chain = self._chain
        context = (
            TaskContext._of(
                message,
                delivery.queue,
                delivery.delivery_count,
                delivery.headers if headers is None else headers,
                self._resources,
                self._worker_id,
                task.retry_policy,
                CancelToken(),
                self.followups,
            )
            if task.signature.wants_context or chain is not None
            else None
        )
        if headers is None:
            headers = delivery.headers
        limits = (
            limits_for(task.timeout, task.soft_timeout, headers)
            if headers or task.timeout is not None or task.soft_timeout is not None
            else NO_LIMITS
        )
        if slot is not None:  # RunnerSlot.start, inlined: every task passes here
            slot.task_id = message.id
            slot.token = context.cancel_token if context is not None else None
            slot.cancel_requested = False
        if strategy.holds_lease:
            self._leased.add(delivery)
        self.running += 1
        if task.track_started:
            if self._debug:
                self._log.started(message, delivery.queue)
            started = self._record(message, task, TaskState.STARTED)
            await self._store(message, started, final=False)
        if self._bus.active:
            self._emit("chicory_task_started", message, task)
        try:
            if chain is None:
                return await execute(
                    task, args, kwargs, context, self._limiter, self.threads, limits, slot
                )
            assert context is not None
            return await execute_chain(
                chain, task, args, kwargs, context, self._limiter, self.threads, limits, slot
            )
        except anyio.get_cancelled_exc_class():
            if slot is not None and slot.cancel_requested and not self._worker.killed:
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()  # the cancel request's own: the run ends CANCELLED
                return Outcome(error=TaskCancelledError(message.id, "cancelled while running"))
            if not self._worker.killed:
                transition(JobState.RUNNING, JobState.CANCELLED)
                self._log.cancelled(message, delivery.queue, strategy.holds_lease)
                await self._settle(lambda: strategy.abandon(delivery), "hand back", message)
            raise
        finally:
            self.running -= 1
            self._leased.discard(delivery)
            if slot is not None:  # RunnerSlot.clear, inlined
                slot.task_id = slot.token = slot.call = None
                slot.in_function = False

    def _succeed(
        self,
        delivery: Delivery,
        message: TaskMessage,
        task: Task[..., Any],
        strategy: AckStrategy,
        outcome: Outcome,
        settler: Settler,
    ) -> Outcome | None:
        """Hand a successful run's result and ack to the settler.

        Returns:
            ``None``, or the failed outcome when the return value does not validate or
            encode (the caller then treats the run as a failed attempt).
        """
        record = None
        try:
            if not task.ignore_result or task.validation_mode.checks_outputs:
                value = task.signature.dump_result(outcome.value, task.validation_mode)
            if not task.ignore_result:
                data = self._record(message, task, TaskState.SUCCESS, result=value)
                limit = task.max_result_bytes
                if limit is not None and len(data) > limit:
                    raise ResultTooLargeError(
                        f"task {task.name!r} returned a result of {len(data)} bytes once "
                        f"encoded, over its max_result_bytes={limit}: store large data "
                        "elsewhere and return a reference to it, or raise the limit "
                        "(@app.task(max_result_bytes=...))"
                    )
                record = StoredResult(task_id=message.id, data=data, final=True)
        except (ResultValidationError, TypeError) as exc:
            return Outcome(error=exc, runtime=outcome.runtime)
        transition(_RUNNING, _SUCCEEDED)
        strategy.after_success(delivery, record, settler, task.result_ttl)
        if self._debug:
            self._log.succeeded(message, delivery.queue, outcome.runtime)
        if self._bus.active:
            self._emit("chicory_task_succeeded", message, task, runtime=outcome.runtime)
        return None

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
        transition(_RUNNING if started else _RECEIVED, JobState.CANCELLED)
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

    def _release_once_settled(
        self, settler: Settler, delivery: Delivery, message: TaskMessage
    ) -> None:
        """Free a succeeded run's unique key once its result is stored and it is acked.

        (A method of its own: a closure in ``_handle`` would turn its locals into cells.)
        """
        settler.after_settled(delivery, lambda: self._release(delivery, message))

    async def _release(self, delivery: Delivery, message: TaskMessage | None) -> None:
        """Free the unique key a final run held (:mod:`chicory.unique`), if it held one."""
        headers = delivery.headers
        key = headers.get(UNIQUE_HEADER) if headers else None
        if key is None or message is None:
            return
        broker = self._app.broker
        if not broker.capabilities.unique_enqueue or not isinstance(broker, UniqueEnqueue):
            log.warning(
                "task %s holds unique key %r, but this worker's broker %r cannot release it "
                "(no 'unique_enqueue' capability)",
                message.id,
                key,
                broker,
            )
            return

        async def release() -> None:
            await broker.release_unique(delivery.queue, key, message.id)

        await self._settle(release, "unique key release", message)

    def _redelivered(self, message: TaskMessage, delivery: Delivery) -> None:
        count = delivery.delivery_count
        self._log.redelivered(message, delivery.queue, count)
        if "chicory_task_redelivered" in self._bus.active:
            event = self._event(message, None, queue=delivery.queue, delivery_count=count)
            self._bus.emit("chicory_task_redelivered", event)

    def lease_lost(self, deliveries: Sequence[Delivery], what: str) -> None:
        """Report deliveries whose ack (``what``) was refused because their lease had
        expired: one line each, and the ``chicory_task_lease_lost`` observers."""
        for delivery in deliveries:
            try:
                message: TaskMessage | None = self._decode(delivery.body, delivery.headers)
            except MessageDecodeError:
                message = None
            self._log.lease_lost(message, delivery.queue, what)
            if "chicory_task_lease_lost" in self._bus.active:
                event = self._event(message, None, queue=delivery.queue, reason=what)
                self._bus.emit("chicory_task_lease_lost", event)

    def _record(
        self,
        message: TaskMessage,
        task: Task[..., Any],
        state: TaskState,
        *,
        result: Any = None,
        error: ErrorInfo | None = None,
    ) -> bytes:
        return encode_record(
            ResultRecord(
                task_id=message.id,
                task=task.name,
                state=state,
                attempt=message.attempt,
                updated_at=utcnow(),
                result=result,
                error=error,
            )
        )

    async def _store(self, message: TaskMessage, data: bytes, *, final: bool) -> bool:
        backend = self._app.backend
        task = self._tasks.get(message.task)
        ttl = task.result_ttl if task is not None else self._app.result_ttl
        return await self._settle(
            lambda: backend.store(message.id, data, final=final, ttl=ttl),
            "result write",
            message,
        )

    async def _settle(
        self, operation: Callable[[], Awaitable[None]], what: str, message: TaskMessage | None
    ) -> bool:
        """Run a settle or write until it goes through (see :func:`resend.until_done`);
        return whether it did."""
        worker = self._worker
        return await resend.until_done(
            operation,
            what=f"{what} of task {message.id if message else '?'}",
            timeout=self._settle_timeout,
            stopping=lambda: worker.stopping,
            killed=lambda: worker.killed,
        )

    def _emit(
        self, hook: str, message: TaskMessage, task: Task[..., Any] | None = None, **fields: Any
    ) -> None:
        if hook in self._bus.active:
            self._bus.emit(hook, self._event(message, task, **fields))

    def _event(
        self, message: TaskMessage | None, task: Task[..., Any] | None, **fields: Any
    ) -> TaskEvent:
        known = task or (self._app.tasks.get(message.task) if message else None)
        fields.setdefault("queue", message.queue if message else "")
        return TaskEvent(
            task_id=message.id if message else "",
            task_name=message.task if message else "",
            attempt=message.attempt if message else 0,
            delivery_mode=known.delivery_mode.value if known else "",
            worker_id=self._worker.worker_id,
            at=utcnow(),
            **fields,
        )


def too_large(task: Task[..., Any], size: int) -> ResultTooLargeError:
    """The error of a result record over its task's ``max_result_bytes``."""
    return ResultTooLargeError(
        f"task {task.name!r} returned a result of {size} bytes once encoded, over its "
        f"max_result_bytes={task.max_result_bytes}: store large data elsewhere and return "
        "a reference to it, or raise the limit (@app.task(max_result_bytes=...))"
    )


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
