"""``chicory send`` and ``chicory result``: enqueue a task and read its outcome from a shell."""

from __future__ import annotations

import argparse
from typing import Any

import anyio
import orjson

from chicory.admin import Admin, TaskInfo
from chicory.cli.inputs import load_app, parse_json
from chicory.cli.output import Out, moment
from chicory.cli.parsing import Tree, add_app, add_json
from chicory.errors import ConfigurationError
from chicory.records import TaskState

__all__ = ["register"]


def register(tree: Tree) -> None:
    """Add the commands of this module to ``tree``."""
    send = tree.command("send", "enqueue one run of a task; print its task id", _send)
    add_app(send)
    add_json(send)
    send.add_argument("task", metavar="TASK", help="the task's registered name")
    send.add_argument(
        "--args", default="[]", metavar="JSON", help="positional arguments, a JSON array"
    )
    send.add_argument(
        "--kwargs", default="{}", metavar="JSON", help="keyword arguments, a JSON object"
    )
    send.add_argument("--queue", help="publish to this queue (default: the task's queue)")
    send.add_argument(
        "--countdown",
        type=float,
        metavar="SECONDS",
        help="run no sooner than this many seconds from now (default: now)",
    )
    send.add_argument("--task-id", help="use this task id, e.g. an idempotency key (default: new)")

    result = tree.command(
        "result",
        "show a task's state and result (exit 1 if it failed or was cancelled, or --wait timed "
        "out)",
        _result,
    )
    add_app(result)
    add_json(result)
    result.add_argument("task_id", metavar="TASK_ID", help="the task id")
    result.add_argument(
        "--wait", action="store_true", help="wait for the task to finish (up to --timeout)"
    )
    result.add_argument(
        "--timeout", type=float, default=60.0, metavar="SECONDS", help="longest wait with --wait"
    )


def _send(args: argparse.Namespace) -> int:
    if args.countdown is not None and args.countdown < 0:
        raise ConfigurationError(f"--countdown cannot be negative, got {args.countdown}")
    return anyio.run(_send_async, args)


async def _send_async(args: argparse.Namespace) -> int:
    positional = parse_json(args.args, list, "--args")
    keywords = parse_json(args.kwargs, dict, "--kwargs")
    app = load_app(args.app)
    out = Out(json=args.json)
    async with app:
        task_id = await Admin(app).send(
            args.task,
            positional,
            keywords,
            queue=args.queue,
            countdown=args.countdown,
            task_id=args.task_id,
        )
    queue = args.queue or app.tasks[args.task].queue
    if out.json_mode:
        out.json({"task_id": task_id, "task": args.task, "queue": queue})
    else:
        out.lines([task_id])
    out.note(f"sent {args.task} to queue {queue!r} as task {task_id}")
    return 0


def _value(value: Any) -> str:
    return orjson.dumps(value).decode()


def _result(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise ConfigurationError(f"--timeout must be positive, got {args.timeout}")
    return anyio.run(_result_async, args)


async def _result_async(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    out = Out(json=args.json)
    async with app:
        info = await Admin(app).task(args.task_id, wait=args.timeout if args.wait else None)
    if out.json_mode:
        out.json(info.to_json())
    else:
        _print_task(out, info)
    if info.state in (TaskState.FAILURE, TaskState.CANCELLED):
        return 1
    if args.wait and not info.state.final:
        out.note(f"task {args.task_id} did not finish within {args.timeout:g} s")
        return 1
    return 0


def _print_task(out: Out, info: TaskInfo) -> None:
    rows: list[tuple[str, Any]] = [
        ("task id", info.task_id),
        ("state", info.state.value),
        ("task", info.task),
        ("attempt", info.attempt),
        ("updated at", moment(info.updated_at)),
    ]
    if info.progress is not None:
        shown = f"{info.progress.value:g}"
        if info.progress.meta is not None:
            shown += f" {_value(info.progress.meta)}"
        rows.append(("progress", shown))
    if info.state is TaskState.SUCCESS:
        rows.append(("result", _value(info.result)))
    if info.error is not None:
        rows.append(("error", f"{info.error.type}: {info.error.message}"))
    if info.dead_letter is not None:
        rows.append(("dead letter", f"{info.dead_letter.queue} {info.dead_letter.id}"))
    out.table(("FIELD", "VALUE"), rows)
    if info.error is not None and info.error.traceback:
        print(f"\n{info.error.traceback.rstrip()}")
    if info.state is TaskState.PENDING:
        out.note("PENDING: no record (not run yet, unknown id, or expired after result_ttl)")
