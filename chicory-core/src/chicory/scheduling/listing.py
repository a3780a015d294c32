"""What ``chicory schedules`` (and :meth:`chicory.admin.Admin.schedules`) shows of each
schedule: when it fires, its last recorded fire and its next one."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from chicory.records import ResultRecord, TaskProgress, decode_record, progress_of
from chicory.scheduling import records

if TYPE_CHECKING:
    from chicory.app import Chicory

__all__ = ["ScheduleInfo", "schedule_infos"]


@attrs.frozen(kw_only=True)
class ScheduleInfo:
    """One schedule as operators see it.

    Attributes:
        name: The schedule's name.
        task: The task it runs.
        when: When it fires, for humans (``cron 0 2 * * * (Europe/Paris)``).
        queue: The queue its fires go to.
        missed: Its missed-fire policy.
        last_fire: Its last recorded fire (aware UTC), or ``None`` if it never fired.
        last_task_id: The task id of that fire (``None`` if it never fired).
        last_state: The state of that fire's run (``PENDING`` while queued, or once its
            result expired; ``None`` if it never fired).
        last_progress: What that run last reported with ``ctx.set_progress`` while it
            runs (``None`` once it finished, or if it reports none).
        next_fire: Its next fire (aware UTC).
    """

    name: str
    task: str
    when: str
    queue: str
    missed: str
    last_fire: datetime | None
    last_task_id: str | None
    last_state: str | None
    next_fire: datetime
    last_progress: TaskProgress | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO 8601 text)."""
        return {
            "name": self.name,
            "task": self.task,
            "when": self.when,
            "queue": self.queue,
            "missed": self.missed,
            "last_fire": self.last_fire.isoformat() if self.last_fire else None,
            "last_task_id": self.last_task_id,
            "last_state": self.last_state,
            "next_fire": self.next_fire.isoformat(),
            "last_progress": None
            if self.last_progress is None
            else {"value": self.last_progress.value, "meta": self.last_progress.meta},
        }


async def schedule_infos(app: Chicory, now: datetime) -> list[ScheduleInfo]:
    """Every schedule of ``app``, by name, with its last and next fire as of ``now``.

    Raises:
        ResultBackendError: the result backend could not be reached.
    """
    backend = await app.connected_backend()
    found = []
    for name in sorted(app.schedules):
        schedule = app.schedules[name]
        last = await records.last_fire(backend, name)
        last_id = schedule.fire_id(last) if last is not None else None
        state, progress = None, None
        if last_id is not None:
            data = await backend.get(last_id)
            if data is None:
                state = "PENDING"
            else:
                state = decode_record(data, ResultRecord).state.value
                progress = progress_of(data)
        found.append(
            ScheduleInfo(
                name=name,
                task=schedule.task,
                when=schedule.describe(),
                queue=schedule.queue or app.tasks[schedule.task].queue,
                missed=schedule.missed,
                last_fire=last,
                last_task_id=last_id,
                last_state=state,
                next_fire=schedule.next_after(now),
                last_progress=progress,
            )
        )
    return found
