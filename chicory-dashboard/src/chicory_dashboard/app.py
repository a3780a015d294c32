"""The dashboard as an ASGI application: :func:`create_dashboard`.

Pages are rendered on the server (Jinja2) and kept fresh by htmx, which swaps in fragments it
polls for; there is no front-end build. Everything the dashboard reads or changes goes through
:class:`chicory.admin.Admin`, one page at a time (at most ``page_size`` dead letters per
request, whatever the broker holds).

Safe by default:

* **Read-only** unless ``allow_actions=True``: without it, no replay, delete, cancel,
  remove or fire button is shown and the action endpoints answer 403.
* **Confirmed actions**: every button that changes something asks first (``hx-confirm``).
* **An auth hook**: ``authorize(request, action)`` is asked before every request, with
  ``action`` one of :data:`ACTIONS`; ``False`` answers 403. Plug in the
  session, header or network check of the service it is mounted in.
* **No cross-site forms**: action endpoints accept only ``POST`` requests that carry htmx's
  ``HX-Request`` header, which a form on another site cannot send without the browser's
  cross-origin checks refusing it first.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from chicory import Chicory
from chicory.admin import Admin
from chicory.cli.output import age, moment
from chicory.clock import Clock, SystemClock
from chicory_dashboard import schedules, views
from chicory_dashboard.charts import Sampler
from chicory_dashboard.progress import progress_view

__all__ = ["ACTIONS", "Authorize", "Dashboard", "create_dashboard"]

HERE = Path(__file__).parent

ACTIONS = ("view", "replay", "delete", "cancel", "remove", "fire")
"""What the auth hook is asked about: looking (``view``), replaying or deleting a dead letter,
cancelling a task, removing a delayed task, firing a schedule now."""

Authorize = Callable[[Request, str], bool | Awaitable[bool]]
"""``authorize(request, action)``, with ``action`` one of :data:`ACTIONS`."""


class Dashboard:
    """What every request handler shares: the app, its admin API, templates, settings.

    Args:
        app: The Chicory app to show.
        allow_actions: Offer the actions (replay, delete, cancel, remove).
        authorize: The auth hook (see the module docstring); ``None`` allows everything.
        page_size: Dead letters per page.
        refresh: Seconds between htmx refreshes of live fragments and chart readings.
        title: Shown in the page header.
        clock: Where the schedules page reads the current time (default: the system clock).
    """

    def __init__(
        self,
        app: Chicory,
        *,
        allow_actions: bool,
        authorize: Authorize | None,
        page_size: int,
        refresh: float,
        title: str,
        clock: Clock | None = None,
    ) -> None:
        self.app = app
        self.admin = Admin(app, actor="chicory dashboard")
        self.allow_actions = allow_actions
        self.authorize = authorize
        self.page_size = page_size
        self.refresh = refresh
        self.title = title
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.sampler = Sampler(refresh)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.globals["dashboard"] = self
        env.filters["moment"] = moment
        env.filters["age"] = age
        env.filters["json"] = lambda value: orjson.dumps(value).decode()
        env.filters["progress"] = progress_view

    def now(self) -> datetime:
        """The current time (aware UTC), read from the dashboard's clock."""
        return datetime.fromtimestamp(self.clock.time(), UTC)

    async def check(self, request: Request, action: str) -> None:
        """Refuse the request (403) unless the auth hook and the settings allow ``action``."""
        if action != "view":
            if not self.allow_actions:
                raise HTTPException(403, "this dashboard is read-only (allow_actions=False)")
            if request.method != "POST" or request.headers.get("hx-request") != "true":
                raise HTTPException(403, "actions are POST requests sent by the dashboard")
        if self.authorize is not None:
            verdict = self.authorize(request, action)
            if inspect.isawaitable(verdict):
                verdict = await verdict
            if not verdict:
                raise HTTPException(403, f"not allowed to {action}")

    async def sample(self) -> None:
        """Take a chart reading if one is due."""
        if self.sampler.due():
            self.sampler.record(await self.admin.workers())

    async def sample_forever(self) -> None:
        """Take a chart reading every ``refresh`` seconds (``chicory dashboard`` runs it)."""
        while True:
            with contextlib.suppress(Exception):
                await self.sample()
            await anyio.sleep(self.refresh)

    def render(
        self, request: Request, template: str, *, status_code: int = 200, **context: Any
    ) -> Response:
        """Render ``template`` with ``context``."""
        return self.templates.TemplateResponse(request, template, context, status_code=status_code)


def create_dashboard(
    app: Chicory,
    *,
    allow_actions: bool = False,
    authorize: Authorize | None = None,
    page_size: int = 50,
    refresh: float = 2.0,
    title: str = "Chicory",
    sample_in_background: bool = False,
    clock: Clock | None = None,
) -> Starlette:
    """Build the dashboard for ``app`` as an ASGI application.

    Serve it alone (``chicory dashboard APP``) or mount it in your own service::

        from fastapi import FastAPI
        from chicory_dashboard import create_dashboard

        api = FastAPI()
        api.mount("/chicory", create_dashboard(app, authorize=staff_only))

    Args:
        app: The Chicory app whose broker and result backend to show. It is connected on
            first use; closing it is its owner's job (the standalone server closes it).
        allow_actions: Offer replaying and deleting dead letters, cancelling tasks,
            removing delayed tasks and firing schedules now (default: read-only).
        authorize: ``authorize(request, action) -> bool`` (or an awaitable of it), asked
            before every request; ``action`` is one of :data:`ACTIONS`.
        page_size: Dead letters per page.
        refresh: Seconds between refreshes of the live parts of a page.
        title: Shown in the page header.
        sample_in_background: Take chart readings in the background while the application
            runs (its lifespan; a mounted application gets no lifespan of its own, so it
            samples while an overview page is open instead).
        clock: Where the schedules page reads the current time, to compute each
            schedule's next fire (default: the system clock; tests pass a
            :class:`~chicory.clock.ManualClock`).
    """
    dashboard = Dashboard(
        app,
        allow_actions=allow_actions,
        authorize=authorize,
        page_size=page_size,
        refresh=refresh,
        title=title,
        clock=clock,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if not sample_in_background:
            yield
            return
        async with anyio.create_task_group() as group:
            group.start_soon(dashboard.sample_forever)
            yield
            group.cancel_scope.cancel()

    routes = [
        Route("/", views.overview, name="overview"),
        Route("/fragments/overview", views.overview_fragment, name="overview_fragment"),
        Route("/queues", views.queues, name="queues"),
        Route("/fragments/queues", views.queues_fragment, name="queues_fragment"),
        Route("/workers", views.workers, name="workers"),
        Route("/fragments/workers", views.workers_fragment, name="workers_fragment"),
        Route("/dead", views.dead_letters, name="dead"),
        Route("/dead/replay", views.replay_selected, methods=["POST"], name="replay_selected"),
        Route("/dead/{queue}/{letter_id}", views.dead_letter, name="dead_letter"),
        Route(
            "/dead/{queue}/{letter_id}/replay",
            views.replay_one,
            methods=["POST"],
            name="replay_one",
        ),
        Route(
            "/dead/{queue}/{letter_id}/delete",
            views.delete_one,
            methods=["POST"],
            name="delete_one",
        ),
        Route("/delayed", views.delayed, name="delayed"),
        Route(
            "/delayed/{queue}/{message_id}/remove",
            views.remove_delayed,
            methods=["POST"],
            name="remove_delayed",
        ),
        Route("/tasks", views.task_lookup, name="tasks"),
        Route("/tasks/{task_id}", views.task, name="task"),
        Route("/fragments/tasks/{task_id}", views.task_fragment, name="task_fragment"),
        Route("/schedules", schedules.schedules, name="schedules"),
        Route("/fragments/schedules", schedules.schedules_fragment, name="schedules_fragment"),
        Route(
            "/schedules/{name}/fire",
            schedules.fire_now,
            methods=["POST"],
            name="fire_schedule",
        ),
        Route("/tasks/{task_id}/cancel", views.cancel_task, methods=["POST"], name="cancel_task"),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    starlette = Starlette(routes=routes, lifespan=lifespan)
    starlette.state.dashboard = dashboard
    return starlette
