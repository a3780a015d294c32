"""What a worker does beyond running a task: continue its workflow, and skip a redelivered
task that finished already.

**Workflow steps** (messages with the ``chicory-flow`` header, :mod:`chicory.workflow`)
settle one by one instead of in the settler's batches, in this order: the result is stored,
then what follows is published or joined (:meth:`FlowDriver.advance`), then an
at-least-once delivery is acked. A worker that dies between those steps leaves an
at-least-once delivery unacked; its redelivery finds the stored result and continues the
flow from there (below). A step that fails for good, is dead-lettered as a poison message
or is cancelled fails what follows it (:meth:`FlowDriver.fail`) before it is settled.

**TaskProgress** (``ctx.set_progress``): stored as the task's record, state ``STARTED`` with
its :class:`~chicory.records.TaskProgress`, written at once (not batched: it is rare, and the
task awaits it). A sync task's call is carried to the worker's event loop and waits there.
The record is non-final, so it never hides the task's result, and the final record replaces
it.

**Redelivered, finished already**: when an at-least-once delivery arrives again
(``delivery_count > 1``), or a step is published again by a redelivered predecessor (the
``chicory-again`` header), the worker reads the task's record first. A ``SUCCESS`` record
written by this attempt (same task, same attempt, not older than the message) means the
previous worker stored the result and died before acking: the delivery is acked without
running the function again, after passing the stored result on to what follows, if
anything does. No record, or another state, and the task runs as usual. Nothing is read for
a first delivery, so the check costs nothing on the normal path.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from chicory.broker import Delivery
from chicory.clock import utcnow
from chicory.envelope import TaskMessage
from chicory.errors import ChicoryError, ResultTooLargeError, ResultValidationError
from chicory.headers import FLOW_HEADER
from chicory.history import HISTORY_HEADER, read_history
from chicory.progress import ProgressFeed
from chicory.records import (
    ErrorInfo,
    ResultRecord,
    TaskProgress,
    TaskState,
    decode_record,
    encode_progress_record,
)
from chicory.task import Task
from chicory.worker.ack import AckStrategy
from chicory.worker.execute import Outcome
from chicory.worker.states import JobState, transition
from chicory.workflow.driver import FlowDriver, step_culprit
from chicory.workflow.links import decode_continuation

if TYPE_CHECKING:
    from chicory.worker.jobbase import JobBase

__all__ = ["Followups"]

log = logging.getLogger("chicory.worker")


class Followups:
    """The workflow and redelivery paths of one worker's job runner (:mod:`chicory.worker.job`)."""

    def __init__(self, runner: JobBase) -> None:
        self._runner = runner
        self._app = runner._app
        self.driver = FlowDriver(runner._app)
        self.loop: asyncio.AbstractEventLoop | None = None
        """The worker's event loop (set when it starts serving), for sync tasks' progress."""

    async def store_progress(self, message: TaskMessage, progress: TaskProgress) -> None:
        """Store ``progress`` as the record of ``message``'s task (``STARTED``).

        Raises:
            TypeError: the progress's meta is not JSON-encodable.
        """
        task = self._app.tasks.get(message.task)
        if task is None or task.ignore_result:
            return
        data = encode_progress_record(
            ResultRecord(
                task_id=message.id,
                task=message.task,
                state=TaskState.STARTED,
                attempt=message.attempt,
                updated_at=utcnow(),
            ),
            progress,
        )
        try:
            backend = await self._app.connected_backend()
            if isinstance(backend, ProgressFeed):
                await backend.store_progress(message.id, data, ttl=task.result_ttl)
            else:
                await backend.store(message.id, data, final=False, ttl=task.result_ttl)
        except ChicoryError as exc:
            log.warning("task %s %s: progress not stored: %s", message.task, message.id, exc)

    def store_progress_from_thread(self, message: TaskMessage, progress: TaskProgress) -> None:
        """:meth:`store_progress` from a sync task's thread; blocks until it is stored.

        Raises:
            RuntimeError: called on the worker's event loop, or the worker is not serving.
            TypeError: the progress's meta is not JSON-encodable.
        """
        loop = self.loop
        if loop is None or loop.is_closed():
            raise RuntimeError("the worker is not serving: there is no event loop to report to")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError(
                "set_progress_sync() was called on the worker's event loop; an async task "
                "awaits ctx.set_progress(...) instead"
            )
        asyncio.run_coroutine_threadsafe(self.store_progress(message, progress), loop).result()

    async def done_already(
        self, delivery: Delivery, message: TaskMessage, task: Task[..., Any]
    ) -> bool:
        """Ack ``delivery`` and return True if its task succeeded already (see the module
        docstring); False to run it."""
        if task.ignore_result:
            return False
        record = await self._stored_success(message)
        if record is None:
            return False
        runner = self._runner
        log.info(
            "task %s %s: delivered again, but its result was stored already (its worker "
            "stopped before acking); acking it without running it again",
            message.task,
            message.id,
        )
        transition(JobState.RECEIVED, JobState.SUCCEEDED)
        flow = delivery.headers.get(FLOW_HEADER)
        if flow is not None and not await self._advance(message, flow, record.result, again=True):
            await runner._settle(lambda: delivery.nack(requeue=True), "hand back", message)
            return True
        await runner._settle(delivery.ack, "ack", message)
        await runner._release(delivery, message)
        return True

    async def _stored_success(self, message: TaskMessage) -> ResultRecord | None:
        try:
            backend = await self._app.connected_backend()
            data = await backend.get(message.id)
            if data is None:
                return None
            record = decode_record(data, ResultRecord)
        except ChicoryError as exc:
            log.warning(
                "task %s %s: delivered again; could not read its record to tell whether it "
                "finished already (%s), so it runs again",
                message.task,
                message.id,
                exc,
            )
            return None
        if (
            record.state is TaskState.SUCCESS
            and record.task == message.task
            and record.attempt == message.attempt
            and record.updated_at >= message.created_at
        ):
            return record
        return None

    async def succeed(
        self,
        delivery: Delivery,
        message: TaskMessage,
        task: Task[..., Any],
        strategy: AckStrategy,
        outcome: Outcome,
        flow: str,
    ) -> Outcome | None:
        """Settle a workflow step that returned: store, continue the flow, ack.

        Returns:
            ``None``, or the failed outcome when the return value does not validate or
            encode (the caller then treats the run as a failed attempt).
        """
        runner = self._runner
        try:
            value = task.signature.dump_result(outcome.value, task.validation_mode)
            record = None
            if not task.ignore_result:
                record = runner._record(message, task, TaskState.SUCCESS, result=value)
                limit = task.max_result_bytes
                if limit is not None and len(record) > limit:
                    raise too_large(task, len(record))
        except (ResultValidationError, TypeError) as exc:
            return Outcome(error=exc, runtime=outcome.runtime)
        transition(JobState.RUNNING, JobState.SUCCEEDED)
        if runner._debug:
            runner._log.succeeded(message, delivery.queue, outcome.runtime)
        runner._emit("chicory_task_succeeded", message, task, runtime=outcome.runtime)
        held = strategy.holds_lease
        if record is not None and not await runner._store(message, record, final=True):
            if held:
                await runner._settle(lambda: delivery.nack(requeue=True), "hand back", message)
            return None
        history = delivery.headers.get(HISTORY_HEADER)
        reopen = history is not None and any(
            entry.event == "replay" for entry in read_history(delivery.headers)
        )
        if not await self._advance(message, flow, value, again=False, reopen=reopen):
            if held:  # its redelivery finds the result stored and continues the flow
                await runner._settle(lambda: delivery.nack(requeue=True), "hand back", message)
            return None
        if held:
            await runner._settle(delivery.ack, "ack", message)
        await runner._release(delivery, message)
        return None

    async def _advance(
        self, message: TaskMessage, flow: str, value: Any, *, again: bool, reopen: bool = False
    ) -> bool:
        """Publish or join what follows a step; whether it went through (``again``: it may
        have been published already; ``reopen``: the step was replayed; see
        :meth:`FlowDriver.advance`)."""
        try:
            then = decode_continuation(flow)
        except ChicoryError as exc:
            log.error(
                "task %s %s: %s; the rest of its flow is dropped", message.task, message.id, exc
            )
            return True
        return await self._runner._settle(
            lambda: self.driver.advance(then, value, again=again, reopen=reopen),
            "workflow step",
            message,
        )

    async def failed(self, delivery: Delivery, message: TaskMessage, error: ErrorInfo) -> None:
        """Fail what follows a step that failed for good (if anything does)."""
        flow = delivery.headers.get(FLOW_HEADER)
        if flow is None:
            return
        try:
            then = decode_continuation(flow)
        except ChicoryError as exc:
            log.error("task %s %s: %s", message.task, message.id, exc)
            return
        culprit = step_culprit(message.task, message.id, error)
        await self._runner._settle(
            lambda: self.driver.fail(then, culprit), "workflow failure", message
        )


def too_large(task: Task[..., Any], size: int) -> ResultTooLargeError:
    """The error of a result record over its task's ``max_result_bytes``."""
    return ResultTooLargeError(
        f"task {task.name!r} returned a result of {size} bytes once encoded, over its "
        f"max_result_bytes={task.max_result_bytes}: store large data elsewhere and return "
        "a reference to it, or raise the limit (@app.task(max_result_bytes=...))"
    )
