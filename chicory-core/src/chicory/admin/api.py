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

import getpass
import logging
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from chicory.admin.cancel import (
    CancelReport,
    DelayedTasks,
    cancel_task,
    delayed_tasks,
)
from chicory.admin.fallback import CoreOnlyInspector
from chicory.admin.letters import describe, list_page
from chicory.admin.models import (
    ActionReport,
    DeadLetterFilter,
    DeadLetterInfo,
    DeadLetterListing,
    DeadLetterRef,
    QueueInfo,
    TaskInfo,
    WorkerStatus,
)
from chicory.admin.replay import replay_fresh
from chicory.admin.tasks import near_failure, read_stored, send_task, task_info
from chicory.app import Chicory
from chicory.broker import DeadLetter
from chicory.clock import utcnow
from chicory.errors import (
    BrokerConnectionError,
    ChicoryError,
    ConfigurationError,
    ResultBackendError,
)
from chicory.inspection import (
    InspectableBroker,
    Inspection,
    missing_inspection,
)
from chicory.records import ResultRecord, TaskState, WorkerInfo, decode_record

if TYPE_CHECKING:
    from chicory.scheduling.listing import ScheduleInfo
    from chicory.scheduling.manual import ManualFire

__all__ = ["Admin", "Progress"]

log = logging.getLogger("chicory.admin")

Progress = Callable[[int, int], None]
"""Called with ``(done, total)`` as a bulk action goes."""


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class Admin:
    """Inspect and repair what an app's broker and result backend hold.

    Args:
        app: The app (its broker, backend, codec, tasks and queues are used; it is connected
            on first use and closed by its owner).
        actor: Who acts, recorded in the history of what this admin replays (default:
            ``user@host``).
        scan_limit: Most dead letters one listing reads per queue to fill a page when it
            filters by task, task id or reason (see :mod:`chicory.admin.letters`).
    """

    def __init__(self, app: Chicory, *, actor: str | None = None, scan_limit: int = 5000):
        if scan_limit < 1:
            raise ConfigurationError(f"scan_limit must be at least 1, got {scan_limit}")
        self.app = app
        self.actor = actor or _actor()
        self.scan_limit = scan_limit

    def __repr__(self) -> str:
        return f"<Admin of {self.app!r}>"

    async def _inspection(self) -> Inspection:
        broker = await self.app.connected_broker()
        if broker.capabilities.inspection and isinstance(broker, InspectableBroker):
            return broker
        return CoreOnlyInspector(broker)

    # -- queues and workers ----------------------------------------------------------------

    async def _worker_records(self) -> list[WorkerInfo]:
        backend = await self.app.connected_backend()
        found = []
        for worker_id, data in (await backend.workers()).items():
            try:
                found.append(decode_record(data, WorkerInfo))
            except ResultBackendError as exc:
                log.warning("skipping the unreadable heartbeat of worker %s: %s", worker_id, exc)
        return found

    async def queue_names(self) -> list[str]:
        """Every queue known: the broker's, the app's (its default queue and every task's),
        and those live workers consume. Sorted."""
        names = set(await (await self._inspection()).queues())
        names.add(self.app.default_queue)
        names.update(task.queue for task in self.app.tasks.values())
        for info in await self._worker_records():
            names.update(info.queues)
        return sorted(names)

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

    # -- dead letters ----------------------------------------------------------------------

    async def _selected_queues(self, selection: DeadLetterFilter) -> list[str]:
        return list(selection.queues) if selection.queues else await self.queue_names()

    async def dead_letters(
        self,
        selection: DeadLetterFilter | None = None,
        *,
        cursor: str | None = None,
        limit: int = 50,
        newest_first: bool = False,
    ) -> DeadLetterListing:
        """One page of dead letters across queues (all by default), merged by time.

        Args:
            selection: Which letters (default: all).
            cursor: The ``cursor`` of the previous page, to get the next one.
            limit: Most letters on the page.
            newest_first: Newest first instead of oldest first.

        Raises:
            ConfigurationError: ``cursor`` is not one a listing gave out, or ``limit`` < 1.
        """
        selection = selection or DeadLetterFilter()
        return await list_page(
            await self._inspection(),
            self.app.codec,
            await self._selected_queues(selection),
            selection,
            cursor=cursor,
            limit=limit,
            newest_first=newest_first,
            scan_limit=self.scan_limit,
        )

    async def iter_dead_letters(
        self, selection: DeadLetterFilter | None = None, *, newest_first: bool = False
    ) -> AsyncIterator[DeadLetterInfo]:
        """Every matching dead letter, page after page."""
        cursor: str | None = None
        while True:
            page = await self.dead_letters(
                selection, cursor=cursor, limit=500, newest_first=newest_first
            )
            for info in page.letters:
                yield info
            if page.cursor is None:
                return
            cursor = page.cursor

    async def select(self, selection: DeadLetterFilter | None = None) -> list[DeadLetterRef]:
        """Where every matching dead letter is, oldest first (what a bulk action acts on)."""
        return [info.ref async for info in self.iter_dead_letters(selection)]

    async def _find(self, dead_letter_id: str, queue: str | None) -> DeadLetter | None:
        inspection = await self._inspection()
        for name in [queue] if queue else await self.queue_names():
            letter = await inspection.get_dead_letter(name, dead_letter_id)
            if letter is not None:
                return letter
        return None

    async def dead_letter(self, dead_letter_id: str, queue: str | None = None) -> DeadLetterInfo:
        """One dead letter, read as a task.

        Args:
            dead_letter_id: Its id.
            queue: Its queue (default: looked for in every queue).

        Raises:
            LookupError: there is no such dead letter.
        """
        letter = await self._find(dead_letter_id, queue)
        if letter is None:
            where = f"queue {queue!r}" if queue else "any queue"
            raise LookupError(f"no dead letter {dead_letter_id!r} in {where}")
        return describe(letter, self.app.codec)

    async def locate(self, ids: Sequence[str], queue: str | None = None) -> list[DeadLetterRef]:
        """The queue of each dead letter id (``queue`` if given, else found by looking).

        Raises:
            LookupError: an id names no dead letter.
        """
        refs = []
        for dead_letter_id in ids:
            if queue is not None:
                refs.append(DeadLetterRef(queue=queue, id=dead_letter_id))
                continue
            letter = await self._find(dead_letter_id, None)
            if letter is None:
                raise LookupError(f"no dead letter {dead_letter_id!r} in any queue")
            refs.append(DeadLetterRef(queue=letter.queue, id=letter.id))
        return refs

    async def replay(
        self,
        refs: Sequence[DeadLetterRef],
        *,
        verbatim: bool = False,
        on_progress: Progress | None = None,
    ) -> ActionReport:
        """Put dead letters back on their queues (see the module docstring).

        Args:
            refs: The dead letters (from :meth:`select` or :meth:`locate`).
            verbatim: Put each back exactly as it was (attempt number included).
            on_progress: Called after each letter with ``(done, total)``.

        Raises:
            CapabilityError: a replay restarting the retry budget needs the broker's
                ``inspection`` capability (``verbatim=True`` does not).
            BrokerConnectionError: the broker could not be reached (letters replayed up to
                then stay replayed).
        """
        inspection = await self._inspection()
        broker = await self.app.connected_broker()
        if not verbatim and isinstance(inspection, CoreOnlyInspector):
            raise missing_inspection(
                broker, "a replay that restarts the retry budget (a verbatim replay does not)"
            )
        done = missing = 0
        failed: list[tuple[DeadLetterRef, str]] = []
        task_ids: list[str] = []
        for index, ref in enumerate(refs, 1):
            try:
                if verbatim:
                    ok = await broker.replay_dead_letter(ref.queue, ref.id)
                    task_id = None
                else:
                    ok, task_id = await replay_fresh(self.app, inspection, ref, self.actor)
            except BrokerConnectionError:
                raise
            except (ChicoryError, ValueError, TypeError) as exc:
                failed.append((ref, str(exc)))
            else:
                if ok:
                    done += 1
                    if task_id is not None:
                        task_ids.append(task_id)
                else:
                    missing += 1
            if on_progress is not None:
                on_progress(index, len(refs))
        return ActionReport(
            action="replay",
            matched=len(refs),
            done=done,
            missing=missing,
            failed=failed,
            dry_run=False,
            refs=list(refs),
            task_ids=task_ids,
        )

    async def delete(
        self, refs: Sequence[DeadLetterRef], *, on_progress: Progress | None = None
    ) -> ActionReport:
        """Delete dead letters for good.

        Raises:
            BrokerConnectionError: the broker could not be reached (letters deleted up to
                then stay deleted).
        """
        broker = await self.app.connected_broker()
        done = 0
        for index, ref in enumerate(refs, 1):
            done += bool(await broker.delete_dead_letter(ref.queue, ref.id))
            if on_progress is not None:
                on_progress(index, len(refs))
        return ActionReport(
            action="delete",
            matched=len(refs),
            done=done,
            missing=len(refs) - done,
            failed=[],
            dry_run=False,
            refs=list(refs),
        )

    async def purge(self, queues: Sequence[str] | None = None) -> dict[str, int]:
        """Delete every dead letter of ``queues`` (default: every queue); return how many
        each queue had."""
        broker = await self.app.connected_broker()
        names = list(queues) if queues else await self.queue_names()
        return {name: await broker.purge_dead_letters(name) for name in names}

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
