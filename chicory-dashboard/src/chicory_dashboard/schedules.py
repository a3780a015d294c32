"""The schedules page: the app's periodic tasks with their last and next fire, and the
"Fire now" action."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from starlette.requests import Request
from starlette.responses import Response

from chicory.errors import ChicoryError
from chicory.scheduling.listing import ScheduleInfo
from chicory.scheduling.schedule import Schedule

if TYPE_CHECKING:
    from chicory_dashboard.app import Dashboard

__all__ = ["ScheduleRow", "fire_now", "schedules", "schedules_fragment"]


@attrs.frozen(kw_only=True)
class ScheduleRow:
    """One row of the schedules table.

    Attributes:
        info: What the admin API reports of the schedule (last and next fire).
        schedule: The schedule as declared (its cron expression or interval, its zone).
        next_in: Seconds from now to its next fire.
    """

    info: ScheduleInfo
    schedule: Schedule
    next_in: float


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


async def _context(dashboard: Dashboard) -> dict[str, Any]:
    now = dashboard.now()
    infos = await dashboard.admin.schedules(now)
    rows = [
        ScheduleRow(
            info=info,
            schedule=dashboard.app.schedules[info.name],
            next_in=(info.next_fire - now).total_seconds(),
        )
        for info in infos
    ]
    return {"rows": rows, "now": now}


async def schedules(request: Request) -> Response:
    """Every schedule of the app: what it runs, when, its last fire and its next."""
    dashboard = _dashboard(request)
    await dashboard.check(request, "view")
    return dashboard.render(request, "schedules.html", **await _context(dashboard))


async def schedules_fragment(request: Request) -> Response:
    """The live schedules table."""
    dashboard = _dashboard(request)
    await dashboard.check(request, "view")
    return dashboard.render(request, "_schedules.html", **await _context(dashboard))


async def fire_now(request: Request) -> Response:
    """Enqueue one run of a schedule now (``Admin.fire``); answer with what that did."""
    dashboard = _dashboard(request)
    await dashboard.check(request, "fire")
    name = request.path_params["name"]
    try:
        fired = await dashboard.admin.fire(name)
    except ChicoryError as exc:
        return dashboard.render(request, "_fired.html", fired=None, name=name, error=str(exc))
    return dashboard.render(request, "_fired.html", fired=fired, name=name, error=None)
