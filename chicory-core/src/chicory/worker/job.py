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

The paths away from success are :mod:`chicory.worker.failures`; the steps they all share
(records, settles, events, unique keys) are :mod:`chicory.worker.jobbase`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import anyio

from chicory.backend import StoredResult
from chicory.broker import Delivery
from chicory.context import CancelToken, TaskContext
from chicory.envelope import TaskMessage
from chicory.errors import (
    ArgumentValidationError,
    MessageDecodeError,
    ResultTooLargeError,
    ResultValidationError,
    TaskCancelledError,
)
from chicory.headers import FLOW_HEADER
from chicory.records import TaskState
from chicory.task import Task
from chicory.timelimits import NO_LIMITS, limits_for
from chicory.unique import UNIQUE_HEADER
from chicory.worker.ack import STRATEGIES, AckStrategy
from chicory.worker.execute import Outcome, execute, execute_chain
from chicory.worker.failures import JobFailures
from chicory.worker.settler import Settler
from chicory.worker.slots import RunnerSlot
from chicory.worker.states import JobState, transition
from chicory.workflow.links import AGAIN_HEADER

__all__ = ["JobRunner"]

log = logging.getLogger("chicory.worker")


# The states every task passes through, read once: a member lookup on an Enum class goes
# through its metaclass (tens of nanoseconds each in 3.11, several per task).
_RECEIVED, _RUNNING, _SUCCEEDED = JobState.RECEIVED, JobState.RUNNING, JobState.SUCCEEDED


class JobRunner(JobFailures):
    """Runs deliveries for one worker.

    Args:
        worker: The owning worker (for its app, bus and stop flags).
        settle_timeout: Seconds a shielded settle or result write may take.
    """

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
            permit: str | None = ""
            if task.flow is not None:
                permit = await self._admit(delivery, message, task)
                if permit is None:
                    return False
            settler = self.settler
            assert settler is not None
            if strategy.acts_before_run:
                self.fan_out()  # the runners of the other waiting deliveries join this batch
                if not await strategy.before_run(delivery, settler):
                    if permit:
                        self.gate.ended(message.task, permit)
                    state = transition(state, JobState.CANCELLED)
                    self._log.not_run(message, delivery.queue)
                    return False
            state = transition(state, _RUNNING)
            outcome = await self._run(
                delivery, message, task, strategy, args, kwargs, slot, headers
            )
            if permit:  # a run cancelled by a drain keeps it until it expires, as a killed one
                self.gate.ended(message.task, permit)
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

    async def _admit(
        self, delivery: Delivery, message: TaskMessage, task: Task[..., Any]
    ) -> str | None:
        """Check the flow limits of ``task`` (:mod:`chicory.worker.gate`).

        Returns:
            The permit held for the run (``""`` for none), or ``None`` when the message was
            handed back to wait in the broker (the job is then DEFERRED).
        """
        try:
            verdict = await self.gate.admit(delivery, message, task)
        except Exception as exc:
            log.warning(
                "task %s %s: its flow limits could not be checked (%r); it waits 1 s",
                message.task,
                message.id,
                exc,
            )
            verdict = (1.0, delivery.headers)
        if verdict is None:
            flow = task.flow
            return self.gate.holder(message) if flow and flow.concurrency is not None else ""
        wait, headers = verdict
        transition(_RECEIVED, JobState.DEFERRED)
        if self._debug:
            log.debug("task %s %s waits %.3f s in the broker", message.task, message.id, wait)
        broker = self._app.broker
        if broker.capabilities.atomic_retry:
            due = self._app.utcnow() + timedelta(seconds=wait)
            await self._settle(
                lambda: delivery.retry(delivery.body, headers, not_before=due), "defer", message
            )
        else:
            await self._settle(lambda: delivery.nack(requeue=True, delay=wait), "defer", message)
        return None

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
