"""The admin API: inspect and repair a deployment through an app's broker and result backend.

:class:`Admin` is what ``chicory queues``, ``chicory workers``, ``chicory dead ...``,
``chicory send``, ``chicory result`` and the dashboard call; users' scripts can call it too.
It talks to the broker only through the core protocol and the ``inspection`` capability
(:mod:`chicory.inspection`), and to the result backend through its protocol. On a broker
without that capability it does what the core protocol allows (:mod:`chicory.admin.fallback`)
and raises :class:`~chicory.errors.CapabilityError` for the rest.

**Replays restart the retry budget.** A replayed dead letter goes back on its queue as
attempt 1 of the same task id (the task id is its idempotency key), so its task gets every
retry of its policy again, and its old ``FAILURE`` record is deleted first where the result
backend can (:class:`~chicory.inspection.RecordForgetting`), so a wait for its result waits
for the replayed run; what
happened before is kept in the ``chicory-history`` header (:mod:`chicory.history`): the
failed attempts, when and why it was dead-lettered, and the replay itself, with who replayed
it. The body is re-encoded (and signed, with the app's key) by this process, and the broker
swaps the dead letter for the new message in one atomic step. A dead letter whose body is not
a readable envelope (a poison message) is put back unchanged but for that history. A verbatim
replay (``verbatim=True``) puts the letter back exactly as it was, attempt number included;
it is the only replay a broker without the ``inspection`` capability offers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chicory.admin.cancel import (
    CancelReport,
    DelayedTasks,
    cancel_task,
    delayed_tasks,
)
from chicory.admin.dead import DeadLetterAdmin, Progress
from chicory.admin.models import (
    DeadLetterInfo,
    QueueInfo,
    TaskInfo,
    WorkerStatus,
)
from chicory.admin.tasks import near_failure, read_stored, send_task, task_info
from chicory.clock import utcnow
from chicory.records import ResultRecord, TaskState

if TYPE_CHECKING:
    from chicory.scheduling.listing import ScheduleInfo
    from chicory.scheduling.manual import ManualFire

__all__ = ["Admin", "Progress"]


class Admin(DeadLetterAdmin):
    """Inspect and repair what an app's broker and result backend hold.

    Args:
        app: The app (its broker, backend, codec, tasks and queues are used; it is connected
            on first use and closed by its owner).
        actor: Who acts, recorded in the history of what this admin replays (default:
            ``user@host``).
        scan_limit: Most dead letters one listing reads per queue to fill a page when it
            filters by task, task id or reason (see :mod:`chicory.admin.letters`).
    """

    # -- queues and workers ----------------------------------------------------------------

    async def queues(self, names: Sequence[str] | None = None) -> list[QueueInfo]:
        """The counts of each queue (default: :meth:`queue_names`), with consumers, live
        workers and the age of the oldest ready message."""
        inspection = await self._inspection()
        names = list(names) if names is not None else await self.queue_names()
        workers = await self._worker_records()
        now = utcnow()
        out = []
        for stats in await inspection.queue_stats(names):
            oldest = stats.oldest_ready_at
            out.append(
                QueueInfo(
                    name=stats.queue,
                    ready=stats.ready,
                    in_flight=stats.in_flight,
                    delayed=stats.delayed,
                    dead=stats.dead,
                    consumers=stats.consumers,
                    workers=sum(1 for w in workers if stats.queue in w.queues),
                    oldest_ready_at=oldest,
                    oldest_ready_age=None
                    if oldest is None
                    else max((now - oldest).total_seconds(), 0.0),
                )
            )
        return out

    async def workers(self) -> list[WorkerStatus]:
        """The live workers (those whose heartbeat has not expired), by host and pid."""
        now = utcnow()
        return sorted(
            (
                WorkerStatus(
                    worker_id=info.worker_id,
                    hostname=info.hostname,
                    pid=info.pid,
                    queues=list(info.queues),
                    concurrency=info.concurrency,
                    active=info.running,
                    processed=info.processed,
                    failed=info.failed,
                    retried=info.retried,
                    started_at=info.started_at,
                    last_seen=info.seen_at,
                    age=max((now - info.seen_at).total_seconds(), 0.0),
                    heartbeat_interval=info.heartbeat_interval,
                )
                for info in await self._worker_records()
            ),
            key=lambda w: (w.hostname, w.pid, w.worker_id),
        )

    # -- cancelling, and delayed tasks ------------------------------------------------------

    async def cancel(
        self, task_id: str, *, queues: Sequence[str] | None = None, ttl: float | None = None
    ) -> CancelReport:
        """Cancel a task wherever it is (see :mod:`chicory.admin.cancel`): a revocation
        record for the workers, and its delayed copy removed from ``queues`` (default:
        :meth:`queue_names`) where the broker can list delayed messages.

        Raises:
            CapabilityError: the result backend keeps no revocation records.
        """
        names = list(queues) if queues is not None else await self.queue_names()
        return await cancel_task(
            self.app, task_id, queues=names, ttl=ttl, scan_limit=self.scan_limit
        )

    async def delayed(
        self, queue: str, *, after: str | None = None, limit: int = 50
    ) -> DelayedTasks:
        """One page of the delayed tasks of ``queue``, soonest due first.

        Raises:
            CapabilityError: the broker lacks the ``delayed_listing`` capability.
        """
        return await delayed_tasks(self.app, queue, after=after, limit=limit)

    async def remove_delayed(self, queue: str, message_id: str) -> bool:
        """Remove one delayed message (by the id :meth:`delayed` lists); False if gone.

        Raises:
            CapabilityError: the broker lacks the ``delayed_listing`` capability.
        """
        from chicory.delayed import delayed_listing

        broker = await self.app.connected_broker()
        listing = delayed_listing(broker, needed_for="removing a delayed task")
        return await listing.remove_delayed(queue, message_id)

    # -- tasks -----------------------------------------------------------------------------

    async def send(
        self,
        task_name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        countdown: float | None = None,
        task_id: str | None = None,
    ) -> str:
        """Enqueue one run of a registered task (arguments checked as ``delay()`` does);
        return its task id.

        Raises:
            ConfigurationError: the app has no task of that name.
            ArgumentValidationError: the arguments do not fit the task's signature.
        """
        return await send_task(
            self.app, task_name, args, kwargs, queue=queue, countdown=countdown, task_id=task_id
        )

    async def schedules(self, now: datetime | None = None) -> list[ScheduleInfo]:
        """The app's periodic tasks, by name, with their last and next fire (as of ``now``,
        default the current time).

        Raises:
            ResultBackendError: the result backend could not be reached.
        """
        from chicory.scheduling.listing import schedule_infos

        return await schedule_infos(self.app, now or utcnow())

    async def fire(self, schedule: str) -> ManualFire:
        """Enqueue one run of ``schedule``'s task now, by hand, unless a run fired by hand
        is still queued or running (see :mod:`chicory.scheduling.manual`).

        Raises:
            ConfigurationError: the app has no schedule of that name.
            CapabilityError: the broker cannot make unique enqueues.
        """
        from chicory.scheduling.manual import fire_now

        return await fire_now(self.app, schedule)

    async def task(self, task_id: str, *, wait: float | None = None) -> TaskInfo:
        """What is known of ``task_id``: its record and, when it failed for good, its dead
        letter and history.

        Args:
            task_id: The task id.
            wait: Seconds to wait for a final record first (``None``: do not wait).
        """
        stored = await read_stored(self.app, task_id, wait=wait)
        if stored is None:
            return TaskInfo(task_id=task_id, state=TaskState.PENDING)
        record, progress = stored
        letter = None
        if record.state is TaskState.FAILURE:
            letter = await self._dead_letter_of(record)
        return task_info(record, letter, progress)

    async def _dead_letter_of(self, record: ResultRecord) -> DeadLetterInfo | None:
        """The dead letter written right after a FAILURE record, looked for near its time."""
        broker = await self.app.connected_broker()
        if not broker.capabilities.inspection:
            return None
        page = await self.dead_letters(near_failure(record), limit=1, newest_first=True)
        return page.letters[0] if page.letters else None
