"""Firing a schedule now, by hand (the dashboard's "Fire now" button, :meth:`Admin.fire
<chicory.admin.Admin.fire>`).

A manual fire enqueues one run of the schedule's task with the schedule's arguments, to the
schedule's queue, as a unique enqueue (:mod:`chicory.unique`) keyed on the schedule's name
(``<name>@manual``): while a run fired by hand is queued or running, firing again enqueues
nothing and returns that run instead, so a button clicked twice, or by two operators, runs
the task once. It is not one of the schedule's fires: the scheduler's fires, their ids and
the schedule's "last fire" record are left as they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from chicory.errors import ConfigurationError

if TYPE_CHECKING:
    from chicory.app import Chicory

__all__ = ["ManualFire", "fire_now", "manual_key"]


@attrs.frozen(kw_only=True)
class ManualFire:
    """What firing a schedule by hand did.

    Attributes:
        schedule: The schedule's name.
        task_id: The run's task id: the new run's, or the one still queued or running.
        enqueued: True if a run was enqueued; False if a run fired by hand earlier still
            held the key (``task_id`` is that run's).
    """

    schedule: str
    task_id: str
    enqueued: bool


def manual_key(name: str) -> str:
    """The unique key of the runs of schedule ``name`` fired by hand."""
    return f"{name}@manual"


async def fire_now(app: Chicory, name: str) -> ManualFire:
    """Enqueue one run of schedule ``name`` now, unless one fired by hand is still pending.

    Raises:
        ConfigurationError: the app has no schedule of that name.
        CapabilityError: the broker cannot make unique enqueues.
        BrokerError: the broker could not be reached.
    """
    schedule = app.schedules.get(name)
    if schedule is None:
        known = ", ".join(sorted(app.schedules)) or "none"
        raise ConfigurationError(f"the app has no schedule named {name!r} (declared: {known})")
    task = app.tasks[schedule.task]
    result = await task.apply_async(
        schedule.args, schedule.kwargs, unique_key=manual_key(name), queue=schedule.queue
    )
    return ManualFire(schedule=name, task_id=result.id, enqueued=not result.duplicate)
