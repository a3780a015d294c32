"""``chicory dead list|show|replay|delete|purge``: dead letters across every queue.

Selection is the same for ``list``, ``replay`` and ``delete``: every queue unless ``-q``
names some, narrowed by ``--task``, ``--task-id``, ``--reason``, ``--since`` and ``--until``.
``replay`` and ``delete`` act on the dead letters named by id, or on every letter the
filters select (``--all`` with no filter); ``--dry-run`` shows what they would act on.
"""

from __future__ import annotations

import argparse
from typing import Any

import anyio

from chicory.admin import ActionReport, Admin, DeadLetterFilter, DeadLetterInfo, DeadLetterRef
from chicory.cli.inputs import load_app, parse_time
from chicory.cli.output import Out, moment
from chicory.cli.parsing import Tree, add_app, add_json
from chicory.errors import ConfigurationError

__all__ = ["register"]

LIST_HEADERS = ("ID", "QUEUE", "DEAD AT", "TASK", "TASK ID", "REASON", "TRACEBACK")


def _select_options(parser: argparse.ArgumentParser, *, ids: bool) -> None:
    parser.add_argument(
        "-q",
        "--queue",
        action="append",
        dest="queues",
        metavar="QUEUE",
        help="only this queue (repeatable; default: every queue)",
    )
    parser.add_argument(
        "--task", help="only this task name; * and ? are wildcards (default: any task)"
    )
    parser.add_argument("--task-id", help="only this task id (default: any)")
    parser.add_argument(
        "--reason",
        help="only letters whose reason or traceback contains this text, any case (default: any)",
    )
    parser.add_argument(
        "--since",
        metavar="TIME",
        help="only letters dead-lettered at or after TIME: 2024-06-01, 2024-06-01T12:30 (UTC "
        "unless a zone is given) or a span ago like 2h (default: no limit)",
    )
    parser.add_argument(
        "--until",
        metavar="TIME",
        help="only letters dead-lettered before TIME, same forms as --since (default: no limit)",
    )
    if ids:
        parser.add_argument(
            "ids",
            nargs="*",
            metavar="ID",
            help="dead letter ids (default: those selected by the filters)",
        )
        parser.add_argument(
            "--all",
            action="store_true",
            help="act on every selected letter when no filter and no id is given",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="show what would be acted on; change nothing"
        )


def register(tree: Tree) -> None:
    """Add the ``dead`` commands to ``tree``."""
    tree.group("dead", "list, inspect, replay and delete dead letters across queues")
    listing = tree.action("dead", "list", "list dead letters across queues, oldest first", _list)
    add_app(listing)
    add_json(listing)
    _select_options(listing, ids=False)
    listing.add_argument("--limit", type=int, default=50, help="most dead letters to list")
    listing.add_argument(
        "--cursor",
        help="continue after the previous listing (the cursor it printed; default: from the start)",
    )
    listing.add_argument("--newest-first", action="store_true", help="list newest first")

    show = tree.action(
        "dead", "show", "show one dead letter: task, arguments, traceback, history", _show
    )
    add_app(show)
    add_json(show)
    show.add_argument("id", metavar="ID", help="the dead letter id")
    show.add_argument("-q", "--queue", help="its queue (default: looked for in every queue)")

    replay = tree.action(
        "dead",
        "replay",
        "put dead letters back on their queues; each restarts its retry budget",
        _replay,
    )
    add_app(replay)
    add_json(replay)
    _select_options(replay, ids=True)
    replay.add_argument(
        "--verbatim",
        action="store_true",
        help="put letters back exactly as they were, attempt number included (no fresh "
        "retry budget, no history)",
    )

    delete = tree.action("dead", "delete", "delete dead letters for good", _delete)
    add_app(delete)
    add_json(delete)
    _select_options(delete, ids=True)

    purge = tree.action("dead", "purge", "delete every dead letter of the queues", _purge)
    add_app(purge)
    add_json(purge)
    purge.add_argument(
        "-q",
        "--queue",
        action="append",
        dest="queues",
        metavar="QUEUE",
        help="only this queue (repeatable; default: every queue)",
    )


def _selection(args: argparse.Namespace) -> DeadLetterFilter:
    since = parse_time(args.since) if args.since else None
    until = parse_time(args.until) if args.until else None
    if since is not None and until is not None and since >= until:
        raise ConfigurationError(f"--since ({since}) must be before --until ({until})")
    return DeadLetterFilter(
        queues=tuple(args.queues or ()),
        task=args.task,
        task_id=args.task_id,
        reason=args.reason,
        since=since,
        until=until,
    )


def _has_filter(args: argparse.Namespace) -> bool:
    return any((args.queues, args.task, args.task_id, args.reason, args.since, args.until))


def letter_row(info: DeadLetterInfo) -> list[Any]:
    """A table row of one dead letter."""
    return [
        info.id,
        info.queue,
        moment(info.dead_at),
        info.task or "?",
        info.task_id or "?",
        info.reason.splitlines()[0] if info.reason else "",
        info.short_traceback,
    ]


def _list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ConfigurationError(f"--limit must be at least 1, got {args.limit}")
    return anyio.run(_list_async, args)


async def _list_async(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    out = Out(json=args.json)
    selection = _selection(args)
    async with app:
        page = await Admin(app).dead_letters(
            selection, cursor=args.cursor, limit=args.limit, newest_first=args.newest_first
        )
    if out.json_mode:
        out.json(page.to_json())
    else:
        out.table(LIST_HEADERS, [letter_row(info) for info in page.letters])
    queues = len({info.queue for info in page.letters})
    out.note(
        f"{len(page.letters)} dead letter(s) from {queues} queue(s) ({page.scanned} read)"
        + (f"; more: --cursor {page.cursor}" if page.cursor else "")
    )
    return 0


def _show(args: argparse.Namespace) -> int:
    return anyio.run(_show_async, args)


async def _show_async(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    out = Out(json=args.json)
    async with app:
        try:
            info = await Admin(app).dead_letter(args.id, args.queue)
        except LookupError as exc:
            out.note(f"error: {exc}")
            return 1
    if out.json_mode:
        out.json(info.to_json())
        return 0
    fields = [
        ("id", info.id),
        ("queue", info.queue),
        ("dead at", moment(info.dead_at)),
        ("task", info.task),
        ("task id", info.task_id),
        ("attempt", info.attempt),
        ("deliveries", info.delivery_count),
        ("args", info.args),
        ("kwargs", info.kwargs),
        ("replays", info.replays),
        ("reason", info.reason),
    ]
    if info.decode_error:
        fields.append(("unreadable", info.decode_error))
    out.table(("FIELD", "VALUE"), fields)
    if info.traceback:
        print(f"\n{info.traceback}")
    if info.history:
        print()
        out.table(
            ("AT", "EVENT", "ATTEMPT", "DETAIL"),
            [[moment(e.at), e.event, e.attempt, e.detail] for e in info.history],
        )
    return 0


async def _targets(admin: Admin, args: argparse.Namespace) -> list[DeadLetterRef]:
    if args.ids:
        if args.queues and len(args.queues) > 1:
            raise ConfigurationError("with dead letter ids, give at most one --queue")
        return await admin.locate(args.ids, args.queues[0] if args.queues else None)
    if not (_has_filter(args) or args.all):
        raise ConfigurationError(
            f"name the dead letters to {args.action} by id, or select them with --queue, "
            "--task, --task-id, --reason, --since or --until, or pass --all for every one"
        )
    return await admin.select(_selection(args))


def _report(out: Out, report: ActionReport, what: str) -> int:
    if out.json_mode:
        out.json(report.to_json())
    else:
        rows = [[ref.queue, ref.id] for ref in report.refs]
        if report.action == "replay" and not report.dry_run and report.task_ids:
            out.lines(report.task_ids)
        elif rows:
            out.table(("QUEUE", "ID"), rows)
    if report.dry_run:
        out.note(f"would {report.action} {report.matched} dead letter(s) (dry run)")
        return 0
    note = f"{what} {report.done} of {report.matched} dead letter(s)"
    if report.missing:
        note += f"; {report.missing} were gone already"
    for ref, error in report.failed:
        out.note(f"error: {ref.queue} {ref.id}: {error}")
    out.note(note)
    return 1 if report.failed else 0


def _replay(args: argparse.Namespace) -> int:
    return anyio.run(_act, args, "replay")


def _delete(args: argparse.Namespace) -> int:
    return anyio.run(_act, args, "delete")


async def _act(args: argparse.Namespace, action: str) -> int:
    app = load_app(args.app)
    out = Out(json=args.json)
    async with app:
        admin = Admin(app)
        try:
            refs = await _targets(admin, args)
        except LookupError as exc:
            out.note(f"error: {exc}")
            return 1
        if args.dry_run:
            report = ActionReport(
                action=action,
                matched=len(refs),
                done=0,
                missing=0,
                failed=[],
                dry_run=True,
                refs=refs,
            )
            return _report(out, report, action)
        with out.progress(f"{action}ing dead letters", len(refs)) as progress:
            if action == "replay":
                report = await admin.replay(refs, verbatim=args.verbatim, on_progress=progress)
            else:
                report = await admin.delete(refs, on_progress=progress)
    done = "replayed" if action == "replay" else "deleted"
    code = _report(out, report, done)
    if action == "replay" and report.done and not args.verbatim:
        out.note("each replayed task starts again at attempt 1, with its full retry budget")
    missing_named = bool(args.ids) and report.missing > 0
    return 1 if code or missing_named else 0


def _purge(args: argparse.Namespace) -> int:
    return anyio.run(_purge_async, args)


async def _purge_async(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    out = Out(json=args.json)
    async with app:
        purged = await Admin(app).purge(args.queues or None)
    total = sum(purged.values())
    if out.json_mode:
        out.json({"purged": purged, "total": total})
    else:
        out.table(("QUEUE", "PURGED"), sorted(purged.items()))
    out.note(f"purged {total} dead letter(s) from {len(purged)} queue(s)")
    return 0
