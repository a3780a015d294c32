"""``chicory cancel`` and ``chicory delayed list|remove``: cancel tasks, see delayed ones."""

from __future__ import annotations

import argparse

import anyio

from chicory.admin import Admin
from chicory.cli.inputs import load_app
from chicory.cli.output import Out, moment
from chicory.cli.parsing import Tree, add_app, add_json
from chicory.errors import ConfigurationError
from chicory.records import TaskState

__all__ = ["register"]


def register(tree: Tree) -> None:
    """Add the commands of this module to ``tree``."""
    cancel = tree.command(
        "cancel",
        "cancel a task: queued or delayed it never runs, running it is stopped "
        "(exit 1 if it had finished otherwise)",
        _cancel,
    )
    add_app(cancel)
    add_json(cancel)
    cancel.add_argument("task_id", metavar="TASK_ID", help="the task id")
    cancel.add_argument(
        "--ttl",
        type=float,
        metavar="SECONDS",
        help="keep the revocation this long (default: the app's result_ttl)",
    )
    cancel.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait up to this long for the task's final state (default: do not wait)",
    )

    tree.group("delayed", "list and remove delayed tasks (those waiting for an eta or a backoff)")
    listing = tree.action("delayed", "list", "list a queue's delayed tasks, soonest first", _list)
    add_app(listing)
    add_json(listing)
    listing.add_argument("-q", "--queue", help="the queue (default: the app's default queue)")
    listing.add_argument("--limit", type=int, default=50, help="most tasks to show")
    listing.add_argument(
        "--after", metavar="CURSOR", help="continue after this cursor (default: from the soonest)"
    )
    remove = tree.action(
        "delayed", "remove", "remove delayed tasks by id (as listed) so they never run", _remove
    )
    add_app(remove)
    add_json(remove)
    remove.add_argument(
        "ids", metavar="ID", nargs="+", help="message ids from chicory delayed list"
    )
    remove.add_argument("-q", "--queue", help="their queue (default: the app's default queue)")


def _cancel(args: argparse.Namespace) -> int:
    for option, value in (("--ttl", args.ttl), ("--wait", args.wait)):
        if value is not None and not value > 0:
            raise ConfigurationError(f"{option} must be a positive number, got {value}")
    return anyio.run(_cancel_async, args)


async def _cancel_async(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    out = Out(json=args.json)
    async with app:
        admin = Admin(app)
        report = await admin.cancel(args.task_id, ttl=args.ttl)
        state = report.state
        if args.wait is not None and not state.final:
            info = await admin.task(args.task_id, wait=args.wait)
            state = info.state
    if out.json_mode:
        out.json({**report.to_json(), "state": state.value})
    else:
        out.table(
            ("FIELD", "VALUE"),
            [
                ("task id", report.task_id),
                ("revoked", "yes"),
                ("removed delayed", ", ".join(report.removed) or "none"),
                ("state", state.value),
            ],
        )
    if state is TaskState.CANCELLED or not state.final:
        if not state.final:
            out.note(
                f"cancel recorded: workers will not start {args.task_id}, and stop it if it runs"
            )
        return 0
    out.note(f"task {args.task_id} had already finished: {state.value}")
    return 1


def _list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ConfigurationError(f"--limit must be at least 1, got {args.limit}")
    return anyio.run(_list_async, args)


async def _list_async(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    out = Out(json=args.json)
    queue = args.queue or app.default_queue
    async with app:
        page = await Admin(app).delayed(queue, after=args.after, limit=args.limit)
    if out.json_mode:
        out.json({"tasks": [task.to_json() for task in page.tasks], "next_after": page.next_after})
    else:
        out.table(
            ("DUE", "TASK", "TASK ID", "ATTEMPT", "ID"),
            [
                (moment(t.due_at), t.task or "(unreadable)", t.task_id or "", t.attempt, t.id)
                for t in page.tasks
            ],
        )
    if page.next_after is not None:
        out.note(f"more: --after {page.next_after}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    return anyio.run(_remove_async, args)


async def _remove_async(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    out = Out(json=args.json)
    queue = args.queue or app.default_queue
    async with app:
        admin = Admin(app)
        removed = {
            message_id: await admin.remove_delayed(queue, message_id) for message_id in args.ids
        }
    if out.json_mode:
        out.json({"queue": queue, "removed": removed})
    gone = [message_id for message_id, done in removed.items() if not done]
    out.note(f"removed {len(removed) - len(gone)} of {len(removed)} delayed task(s) from {queue!r}")
    for message_id in gone:
        out.note(f"not delayed in {queue!r} (gone, due already, or unknown): {message_id}")
    return 1 if gone else 0
