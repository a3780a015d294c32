"""What every step of a job shares: the runner's state, and how it settles, stores, reports.

:class:`JobBase` holds a worker's job-running state (the revoked ids, the runner slots, the
leased deliveries, the counters) and the steps every path of a job ends in: writing a result
record (:meth:`JobBase._store`), settling a delivery until it goes through
(:meth:`JobBase._settle`, :mod:`chicory.worker.resend`), freeing a unique key once a final
run settles (:mod:`chicory.unique`) and emitting observer events. The paths themselves are
:mod:`chicory.worker.job` (a delivery's way to its run and a success) and
:mod:`chicory.worker.failures` (failed attempts, retries, cancellations, dead letters).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from chicory.broker import Delivery
from chicory.clock import utcnow
from chicory.envelope import TaskMessage
from chicory.errors import MessageDecodeError
from chicory.middleware import ExecuteChain
from chicory.plugins.events import TaskEvent
from chicory.records import ErrorInfo, ResultRecord, TaskState, encode_record
from chicory.task import Task
from chicory.unique import UNIQUE_HEADER, UniqueEnqueue
from chicory.worker import resend
from chicory.worker.followups import Followups
from chicory.worker.gate import FlowGate
from chicory.worker.settler import Settler
from chicory.worker.slots import RunnerSlot
from chicory.worker.tasklog import TaskLog
from chicory.worker.threads import SyncThreads

if TYPE_CHECKING:
    from chicory.worker.worker import Worker

__all__ = ["JobBase"]

log = logging.getLogger("chicory.worker")


class JobBase:
    """The state of one worker's job runner, and the steps all its paths share.

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
        self.gate = FlowGate(worker)
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

    def _release_once_settled(
        self, settler: Settler, delivery: Delivery, message: TaskMessage
    ) -> None:
        """Free a succeeded run's unique key once its result is stored and it is acked.

        (A method of its own: a closure in ``handle`` would turn its locals into cells.)
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
