"""The scheduler: fires an app's schedules, safely from any number of processes.

Each fire is an ordinary enqueue of the schedule's task with a deterministic task id, the
schedule's name and the fire's time (``nightly@2026-12-06T01:00:00Z``), made as a unique
enqueue (:mod:`chicory.unique`) whose key is that id and is held until the next fire is due.
Two schedulers (or ten) firing the same schedule enqueue each fire once: the first claims
the key, the others get a duplicate. So high availability is running the scheduler twice,
on two machines; no leader election, no lock to renew.

At start, a scheduler reads each schedule's last-fire record
(:mod:`chicory.scheduling.records`). Fires due after it and before the start fell due while
no scheduler ran: the schedule's ``missed`` policy decides, ``"catch_up_last"`` (the
default) fires the latest of them once, ``"skip"`` drops them. A schedule with no record yet
(never fired) starts with the next fire. While running, a scheduler that falls behind (a
suspended machine, a long broker outage) fires the latest due fire once, never a backlog.

Time comes from an injectable clock (:class:`~chicory.clock.Clock`): tests move a
:class:`~chicory.clock.VirtualClock` across a daylight-saving change and call
:meth:`Scheduler.tick`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import anyio
import attrs

from chicory.app import Chicory
from chicory.clock import Clock, SystemClock
from chicory.errors import ConfigurationError
from chicory.scheduling import records
from chicory.scheduling.schedule import Schedule
from chicory.unique import unique_enqueue

if TYPE_CHECKING:
    from chicory.worker import Worker

__all__ = ["Fire", "Scheduler", "serve_with_worker"]

log = logging.getLogger("chicory.scheduler")


@attrs.frozen(kw_only=True)
class Fire:
    """One fire a scheduler made.

    Attributes:
        schedule: The schedule's name.
        at: When the fire was due (aware UTC).
        task_id: The run's task id (the schedule's name and ``at``).
        enqueued: True if this scheduler enqueued it; False if another had already.
        caught_up: True for a fire missed while no scheduler ran, fired at start.
    """

    schedule: str
    at: datetime
    task_id: str
    enqueued: bool
    caught_up: bool = False


class Scheduler:
    """Fires the schedules of ``app`` (see the module docstring).

    Args:
        app: The app whose :attr:`~chicory.app.Chicory.schedules` to fire.
        clock: Where time comes from (default: the system clock).
        names: Fire only these schedules (default: all of them).
        poll: Longest sleep, in seconds, between two looks at the clock.

    Raises:
        ConfigurationError: the app has no schedules, or ``names`` names an unknown one.
    """

    def __init__(
        self,
        app: Chicory,
        *,
        clock: Clock | None = None,
        names: Sequence[str] | None = None,
        poll: float = 1.0,
    ) -> None:
        unknown = sorted(set(names or ()) - set(app.schedules))
        if unknown:
            raise ConfigurationError(
                f"no schedule named {', '.join(map(repr, unknown))}; the app declares "
                f"{', '.join(sorted(app.schedules)) or 'none'}"
            )
        if not app.schedules:
            raise ConfigurationError(
                f"{app!r} declares no schedules: add @app.periodic(...) above a task, or "
                "app.schedule(task, ...), in the module the app is loaded from"
            )
        if not poll > 0:
            raise ConfigurationError(f"poll must be positive, got {poll}")
        self.app = app
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.schedules: list[Schedule] = [
            app.schedules[name] for name in (names or sorted(app.schedules))
        ]
        self.poll = poll
        self.started_at: datetime | None = None
        self._cursor: dict[str, datetime] = {}
        self._stop = anyio.Event()

    def __repr__(self) -> str:
        return f"<Scheduler {len(self.schedules)} schedule(s) of {self.app!r}>"

    def now(self) -> datetime:
        """The scheduler's current time (aware UTC), read from its clock."""
        return datetime.fromtimestamp(self.clock.time(), UTC)

    def stop(self) -> None:
        """Make :meth:`run` return after the fire in progress, if any."""
        self._stop.set()

    async def start(self) -> None:
        """Read every schedule's last fire (where each one starts from). Called by
        :meth:`tick` and :meth:`run` when needed.

        Raises:
            CapabilityError: the broker cannot make unique enqueues.
            ResultBackendError: the result backend could not be reached.
        """
        unique_enqueue(await self.app.connected_broker(), needed_for="the scheduler")
        backend = await self.app.connected_backend()
        now = self.now()
        for schedule in self.schedules:
            last = await records.last_fire(backend, schedule.name)
            self._cursor[schedule.name] = last if last is not None else now
        self.started_at = now

    async def tick(self) -> list[Fire]:
        """Fire every schedule whose next fire is due now, once; return the fires made.

        Raises:
            BrokerError: the broker could not be reached (nothing is marked fired: the next
                tick tries again).
            ResultBackendError: the result backend could not be reached.
        """
        if self.started_at is None:
            await self.start()
        assert self.started_at is not None
        now = self.now()
        fired: list[Fire] = []
        for schedule in self.schedules:
            due = schedule.last_at_or_before(now)
            if due is None or due <= self._cursor[schedule.name]:
                continue
            missed = due < self.started_at
            if missed and schedule.missed == "skip":
                log.info(
                    "schedule %s: skipping the fire of %s, missed while no scheduler ran "
                    "(missed='skip')",
                    schedule.name,
                    due.isoformat(),
                )
                self._cursor[schedule.name] = due
                continue
            fired.append(await self._fire(schedule, due, caught_up=missed))
            self._cursor[schedule.name] = due
        return fired

    async def _fire(self, schedule: Schedule, at: datetime, *, caught_up: bool) -> Fire:
        task = self.app.tasks[schedule.task]
        task_id = schedule.fire_id(at)
        backend = await self.app.connected_backend()
        recorded = await records.last_fire(backend, schedule.name)
        if recorded is not None and recorded >= at:
            log.debug("schedule %s: %s was fired by another scheduler", schedule.name, task_id)
            return Fire(schedule=schedule.name, at=at, task_id=task_id, enqueued=False)
        following = schedule.next_after(at)
        result = await task.apply_async(
            schedule.args,
            schedule.kwargs,
            task_id=task_id,
            unique=True,
            unique_for=following - at,
            queue=schedule.queue,
        )
        ttl = records.record_ttl(following - at)
        await records.record_fire(backend, schedule.name, at, task_id, ttl=ttl)
        if result.duplicate:
            log.debug("schedule %s: %s was enqueued by another scheduler", schedule.name, task_id)
        else:
            log.info(
                "schedule %s: fired %s as task %s%s",
                schedule.name,
                task.name,
                task_id,
                " (catching up a fire missed while no scheduler ran)" if caught_up else "",
            )
        return Fire(
            schedule=schedule.name,
            at=at,
            task_id=task_id,
            enqueued=not result.duplicate,
            caught_up=caught_up,
        )

    def _wait(self) -> float:
        """Seconds until the soonest next fire, at most ``poll``."""
        now = self.now()
        soonest = min(
            schedule.next_after(max(now, self._cursor.get(schedule.name, now)))
            for schedule in self.schedules
        )
        return max(0.0, min(self.poll, (soonest - now).total_seconds()))

    async def run(self) -> None:
        """Fire the schedules until :meth:`stop` is called (or the task is cancelled).

        A failed fire (the broker or the result backend unreachable) is logged and tried
        again at the next look at the clock; nothing is lost or fired twice for it.

        Raises:
            CapabilityError: the broker cannot make unique enqueues.
        """
        await self.start()
        log.info(
            "scheduler started: %s",
            ", ".join(f"{s.name} ({s.describe()})" for s in self.schedules),
        )
        while not self._stop.is_set():
            try:
                await self.tick()
            except Exception as exc:
                log.error(
                    "scheduler: a fire failed and is tried again shortly: %s: %s",
                    type(exc).__name__,
                    exc,
                )
            with anyio.move_on_after(self._wait() or 0.001):
                await self._stop.wait()
        log.info("scheduler stopped")


async def serve_with_worker(worker: Worker, scheduler: Scheduler) -> None:
    """Run ``worker`` and ``scheduler`` of one app in this event loop until SIGINT or
    SIGTERM (``chicory worker --scheduler``): the scheduler stops when the worker has
    drained, then the app closes."""
    app = worker.app
    try:
        await app.connected_broker()
        await app.connected_backend()
        async with anyio.create_task_group() as tg:
            tg.start_soon(scheduler.run)
            async with anyio.create_task_group() as signals:
                signals.start_soon(worker._watch_signals)
                await worker.serve()
                signals.cancel_scope.cancel()
            scheduler.stop()
    finally:
        await app.close()
