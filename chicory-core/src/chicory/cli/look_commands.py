"""``chicory queues`` and ``chicory workers``: what is waiting, and who is working on it."""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio

from chicory.admin import Admin, QueueInfo, WorkerStatus
from chicory.cli.inputs import load_app
from chicory.cli.output import Out, age
from chicory.cli.parsing import Tree, add_app, add_json
from chicory.errors import ConfigurationError

__all__ = ["register"]

QUEUE_HEADERS = ("QUEUE", "READY", "DELAYED", "IN FLIGHT", "DEAD", "CONSUMERS", "OLDEST READY")
WORKER_HEADERS = (
    "HOST",
    "PID",
    "QUEUES",
    "CONCURRENCY",
    "ACTIVE",
    "PROCESSED",
    "FAILED",
    "LAST SEEN",
)


def register(tree: Tree) -> None:
    """Add the commands of this module to ``tree``."""
    queues = tree.command(
        "queues",
        "list every queue: ready, delayed, in flight, dead, consumers, oldest ready",
        _queues,
    )
    add_app(queues)
    add_json(queues)
    queues.add_argument(
        "-q",
        "--queue",
        action="append",
        dest="queues",
        metavar="QUEUE",
        help="show only this queue (repeatable; default: every queue)",
    )
    queues.add_argument(
        "--watch",
        action="store_true",
        help="refresh in place until Ctrl-C (with --json: one JSON line per refresh)",
    )
    queues.add_argument(
        "--interval", type=float, default=2.0, metavar="SECONDS", help="seconds between refreshes"
    )
    queues.add_argument(
        "--count",
        type=int,
        default=0,
        metavar="N",
        help="with --watch, stop after N refreshes (default: 0, never)",
    )
    workers = tree.command(
        "workers", "list live workers: host, pid, queues, load and counts", _workers
    )
    add_app(workers)
    add_json(workers)


def queue_rows(queues: list[QueueInfo]) -> list[list[Any]]:
    """Table rows of ``queues``."""
    return [
        [
            q.name,
            q.ready,
            q.delayed,
            q.in_flight,
            q.dead,
            q.consumers if q.consumers is not None else q.workers,
            age(q.oldest_ready_age),
        ]
        for q in queues
    ]


def worker_rows(workers: list[WorkerStatus]) -> list[list[Any]]:
    """Table rows of ``workers``."""
    return [
        [
            w.hostname,
            w.pid,
            ",".join(w.queues),
            w.concurrency,
            w.active,
            w.processed,
            w.failed,
            f"{age(w.age)} ago",
        ]
        for w in workers
    ]


def _queues(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        raise ConfigurationError(f"--interval must be positive, got {args.interval}")
    return anyio.run(_queues_async, args)


async def _queues_async(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    out = Out(json=args.json)
    async with app:
        admin = Admin(app)

        async def read() -> list[QueueInfo]:
            return await admin.queues(args.queues or None)

        if not args.watch:
            found = await read()
            if out.json_mode:
                out.json([q.to_json() for q in found])
            else:
                out.table(QUEUE_HEADERS, queue_rows(found))
                out.note(f"{len(found)} queue(s) on {app.broker_description}")
            return 0
        await _watch(out, read, args)
    return 0


async def _watch(out: Out, read: Any, args: argparse.Namespace) -> None:
    """Refresh the queue table every ``--interval`` until Ctrl-C or ``--count``."""
    shown = 0
    if out.json_mode or not out.rich_tables():
        while True:
            found = await read()
            if out.json_mode:
                out.json_line({"at": time.time(), "queues": [q.to_json() for q in found]})
            else:
                out.table(QUEUE_HEADERS, queue_rows(found))
                print(flush=True)
            shown += 1
            if args.count and shown >= args.count:
                return
            await anyio.sleep(args.interval)
    from rich.live import Live

    def frame(found: list[QueueInfo]) -> Any:
        title = f"chicory queues (every {args.interval:g}s, Ctrl-C to stop)"
        return out.renderable(QUEUE_HEADERS, queue_rows(found), title=title)

    with Live(frame(await read()), auto_refresh=False) as live:
        shown = 1
        while not args.count or shown < args.count:
            await anyio.sleep(args.interval)
            live.update(frame(await read()), refresh=True)
            shown += 1


def _workers(args: argparse.Namespace) -> int:
    return anyio.run(_workers_async, args)


async def _workers_async(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    out = Out(json=args.json)
    async with app:
        found = await Admin(app).workers()
    if out.json_mode:
        out.json([w.to_json() for w in found])
    else:
        out.table(WORKER_HEADERS, worker_rows(found))
        out.note(f"{len(found)} live worker(s)")
    return 0
