"""The dashboard's request handlers: one per page, one per live fragment, one per action."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from chicory.admin import DeadLetterFilter, DeadLetterRef
from chicory.cli.inputs import parse_time
from chicory.errors import CapabilityError, ChicoryError, ConfigurationError
from chicory_dashboard.charts import chart

if TYPE_CHECKING:
    from chicory_dashboard.app import Dashboard

__all__ = [
    "cancel_task",
    "dead_letter",
    "dead_letters",
    "delayed",
    "delete_one",
    "overview",
    "overview_fragment",
    "queues",
    "queues_fragment",
    "remove_delayed",
    "replay_one",
    "replay_selected",
    "task",
    "task_fragment",
    "task_lookup",
    "workers",
    "workers_fragment",
]

FILTERS = ("queue", "task", "task_id", "reason", "since", "until")


def _dashboard(request: Request) -> Dashboard:
    dashboard: Dashboard = request.app.state.dashboard
    return dashboard


async def _viewer(request: Request) -> Dashboard:
    dashboard = _dashboard(request)
    await dashboard.check(request, "view")
    return dashboard


async def _overview_context(dashboard: Dashboard) -> dict[str, Any]:
    await dashboard.sample()
    queues = await dashboard.admin.queues()
    workers = await dashboard.admin.workers()
    samples = list(dashboard.sampler.samples)
    return {
        "queues": queues,
        "workers": workers,
        "totals": {
            "ready": sum(q.ready for q in queues),
            "delayed": sum(q.delayed for q in queues),
            "in_flight": sum(q.in_flight for q in queues),
            "dead": sum(q.dead for q in queues),
            "workers": len(workers),
            "active": sum(w.active for w in workers),
        },
        "throughput": chart([s.processed for s in samples]),
        "failures": chart([s.failed for s in samples]),
        "samples": len(samples),
    }


async def overview(request: Request) -> Response:
    """The overview page: totals, throughput and failure charts."""
    dashboard = await _viewer(request)
    return dashboard.render(request, "overview.html", **await _overview_context(dashboard))


async def overview_fragment(request: Request) -> Response:
    """The live part of the overview page."""
    dashboard = await _viewer(request)
    return dashboard.render(request, "_overview.html", **await _overview_context(dashboard))


async def queues(request: Request) -> Response:
    """Every queue with its depths."""
    dashboard = await _viewer(request)
    return dashboard.render(request, "queues.html", queues=await dashboard.admin.queues())


async def queues_fragment(request: Request) -> Response:
    """The live queue table."""
    dashboard = await _viewer(request)
    return dashboard.render(request, "_queues.html", queues=await dashboard.admin.queues())


async def workers(request: Request) -> Response:
    """The live workers."""
    dashboard = await _viewer(request)
    return dashboard.render(request, "workers.html", workers=await dashboard.admin.workers())


async def workers_fragment(request: Request) -> Response:
    """The live worker table."""
    dashboard = await _viewer(request)
    return dashboard.render(request, "_workers.html", workers=await dashboard.admin.workers())


def _selection(request: Request) -> tuple[DeadLetterFilter, dict[str, str]]:
    """The dead-letter filter the query string asks for, and the filled-in fields."""
    fields = {name: request.query_params.get(name, "").strip() for name in FILTERS}
    selection = DeadLetterFilter(
        queues=(fields["queue"],) if fields["queue"] else (),
        task=fields["task"] or None,
        task_id=fields["task_id"] or None,
        reason=fields["reason"] or None,
        since=parse_time(fields["since"]) if fields["since"] else None,
        until=parse_time(fields["until"]) if fields["until"] else None,
    )
    return selection, fields


async def dead_letters(request: Request) -> Response:
    """Dead letters across queues, newest first, filtered, one page at a time."""
    dashboard = await _viewer(request)
    error = None
    fields = {name: request.query_params.get(name, "") for name in FILTERS}
    listing = None
    try:
        selection, fields = _selection(request)
        listing = await dashboard.admin.dead_letters(
            selection,
            cursor=request.query_params.get("cursor") or None,
            limit=dashboard.page_size,
            newest_first=request.query_params.get("order", "newest") != "oldest",
        )
    except ConfigurationError as exc:
        error = str(exc)
    next_url = None
    if listing is not None and listing.cursor:
        next_url = request.url.include_query_params(cursor=listing.cursor)
    chosen = {name: value for name, value in fields.items() if value}
    bulk_url = request.url_for("replay_selected").include_query_params(**chosen)
    return dashboard.render(
        request,
        "dead.html",
        listing=listing,
        fields=fields,
        order=request.query_params.get("order", "newest"),
        error=error,
        next_url=next_url,
        bulk_url=bulk_url,
        filtered=bool(chosen),
        queue_names=await dashboard.admin.queue_names(),
    )


async def dead_letter(request: Request) -> Response:
    """One dead letter: its task, arguments, traceback and history."""
    dashboard = await _viewer(request)
    queue, letter_id = request.path_params["queue"], request.path_params["letter_id"]
    try:
        info = await dashboard.admin.dead_letter(letter_id, queue)
    except LookupError:
        return dashboard.render(
            request, "gone.html", what=f"dead letter {letter_id} of queue {queue}", status_code=404
        )
    return dashboard.render(request, "dead_letter.html", letter=info)


async def replay_one(request: Request) -> Response:
    """Replay one dead letter (a fresh retry budget); answer with the row's new content."""
    dashboard = _dashboard(request)
    await dashboard.check(request, "replay")
    ref = DeadLetterRef(queue=request.path_params["queue"], id=request.path_params["letter_id"])
    report = await dashboard.admin.replay([ref])
    row = request.query_params.get("in") == "row"
    return dashboard.render(request, "_action_result.html", report=report, ref=ref, row=row)


async def delete_one(request: Request) -> Response:
    """Delete one dead letter; answer with the row's new content."""
    dashboard = _dashboard(request)
    await dashboard.check(request, "delete")
    ref = DeadLetterRef(queue=request.path_params["queue"], id=request.path_params["letter_id"])
    report = await dashboard.admin.delete([ref])
    row = request.query_params.get("in") == "row"
    return dashboard.render(request, "_action_result.html", report=report, ref=ref, row=row)


async def replay_selected(request: Request) -> Response:
    """Replay every dead letter the filters in the query string select."""
    dashboard = _dashboard(request)
    await dashboard.check(request, "replay")
    try:
        selection, _ = _selection(request)
        refs = await dashboard.admin.select(selection)
        report = await dashboard.admin.replay(refs)
    except ChicoryError as exc:
        return dashboard.render(request, "_bulk_result.html", report=None, error=str(exc))
    return dashboard.render(request, "_bulk_result.html", report=report, error=None)


async def task_lookup(request: Request) -> Response:
    """The task lookup form; with ``?id=``, the task's page."""
    dashboard = await _viewer(request)
    task_id = request.query_params.get("id", "").strip()
    if task_id:
        return RedirectResponse(request.url_for("task", task_id=task_id), status_code=303)
    return dashboard.render(request, "task_lookup.html")


async def task(request: Request) -> Response:
    """One task: state, progress, result or error with its traceback, dead letter,
    history."""
    dashboard = await _viewer(request)
    info = await dashboard.admin.task(request.path_params["task_id"])
    return dashboard.render(request, "task.html", task=info)


async def task_fragment(request: Request) -> Response:
    """The live part of a task's page: state, progress, outcome. Polled while the task is
    not final; the fragment of a final task stops the polling."""
    dashboard = await _viewer(request)
    info = await dashboard.admin.task(request.path_params["task_id"])
    return dashboard.render(request, "_task.html", task=info)


async def cancel_task(request: Request) -> Response:
    """Cancel a task (``Admin.cancel``); answer with what that did."""
    dashboard = _dashboard(request)
    await dashboard.check(request, "cancel")
    task_id = request.path_params["task_id"]
    try:
        report = await dashboard.admin.cancel(task_id)
    except ChicoryError as exc:
        return dashboard.render(request, "_cancel_result.html", report=None, error=str(exc))
    return dashboard.render(request, "_cancel_result.html", report=report, error=None)


async def delayed(request: Request) -> Response:
    """A queue's delayed tasks (``eta``/``countdown`` and retries waiting out their backoff),
    soonest due first, one page at a time."""
    dashboard = await _viewer(request)
    queues = await dashboard.admin.queues()
    queue = request.query_params.get("queue", "").strip()
    if not queue:  # the first queue holding delayed tasks, else the first queue
        waiting = [q.name for q in queues if q.delayed] or [q.name for q in queues]
        queue = waiting[0] if waiting else ""
    listing, error, next_url = None, None, None
    if queue:
        try:
            listing = await dashboard.admin.delayed(
                queue,
                after=request.query_params.get("after") or None,
                limit=dashboard.page_size,
            )
        except CapabilityError as exc:
            error = str(exc)
    if listing is not None and listing.next_after:
        next_url = request.url.include_query_params(queue=queue, after=listing.next_after)
    return dashboard.render(
        request,
        "delayed.html",
        queues=queues,
        queue=queue,
        listing=listing,
        error=error,
        next_url=next_url,
    )


async def remove_delayed(request: Request) -> Response:
    """Remove one delayed message for good; answer with the row's new content."""
    dashboard = _dashboard(request)
    await dashboard.check(request, "remove")
    queue, message_id = request.path_params["queue"], request.path_params["message_id"]
    try:
        removed = await dashboard.admin.remove_delayed(queue, message_id)
    except ChicoryError as exc:
        return dashboard.render(
            request, "_removed.html", removed=False, error=str(exc), id=message_id
        )
    return dashboard.render(request, "_removed.html", removed=removed, error=None, id=message_id)
