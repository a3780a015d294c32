"""``chicory scheduler`` and ``chicory schedules``: fire an app's periodic tasks, list them."""

from __future__ import annotations

import argparse
import logging
import signal
from datetime import UTC, datetime
from typing import Any

import anyio

from chicory.admin import Admin
from chicory.cli.inputs import load_app
from chicory.cli.output import Out
from chicory.cli.parsing import Tree, add_app, add_json
from chicory.errors import ConfigurationError

__all__ = ["register"]

log = logging.getLogger("chicory.scheduler")

HEADERS = ("SCHEDULE", "TASK", "WHEN", "QUEUE", "MISSED", "LAST FIRE", "LAST STATE", "NEXT FIRE")


def register(tree: Tree) -> None:
    """Add the commands of this module to ``tree``."""
    scheduler = tree.command(
        "scheduler",
        "fire an app's periodic tasks (run it on several machines for high availability: "
        "each fire is enqueued once)",
        _scheduler,
    )
    add_app(scheduler)
    scheduler.add_argument(
        "-s",
        "--schedule",
        action="append",
        dest="names",
        metavar="NAME",
        help="fire only this schedule (repeatable; default: every schedule of the app)",
    )
    scheduler.add_argument(
        "--poll",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="longest sleep between two looks at the clock (default: 1.0)",
    )
    schedules = tree.command(
        "schedules", "list an app's periodic tasks with their last and next fire", _schedules
    )
    add_app(schedules)
    add_json(schedules)


def _scheduler(args: argparse.Namespace) -> int:
    from chicory.scheduling.runner import Scheduler

    app = load_app(args.app)
    if not app.broker.capabilities.shared:
        log.warning(
            "broker %s is process-local: the fires reach only workers in this process. Use "
            "a shared broker such as redis:// for real deployments.",
            app.broker_description,
        )
    scheduler = Scheduler(app, names=args.names, poll=args.poll)
    anyio.run(_run, scheduler)
    return 0


async def _run(scheduler: Any) -> None:
    """Run ``scheduler`` until SIGINT or SIGTERM, then close its app."""
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signal, scheduler)
            await scheduler.run()
            tg.cancel_scope.cancel()
    finally:
        await scheduler.app.close()


async def _stop_on_signal(scheduler: Any) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.warning("%s received: stopping the scheduler", signal.Signals(signum).name)
            scheduler.stop()
            return


def _when(moment: datetime | None) -> str:
    if moment is None:
        return "never"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _schedules(args: argparse.Namespace) -> int:
    return anyio.run(_schedules_async, args)


async def _schedules_async(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    out = Out(json=args.json)
    if not app.schedules:
        raise ConfigurationError(
            f"{args.app} declares no schedules (add @app.periodic(...) above a task)"
        )
    async with app:
        found = await Admin(app).schedules()
    if out.json_mode:
        out.json([info.to_json() for info in found])
        return 0
    rows = [
        [
            info.name,
            info.task,
            info.when,
            info.queue,
            info.missed,
            _when(info.last_fire),
            info.last_state or "-",
            _when(info.next_fire),
        ]
        for info in found
    ]
    out.table(HEADERS, rows)
    out.note(f"{len(found)} schedule(s)")
    return 0
