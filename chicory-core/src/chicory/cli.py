"""The ``chicory`` command line: run workers, inspect plugins and dead letters, run the demo.

Commands::

    chicory worker MODULE:APP [--queue Q ...] [--concurrency N] [--prefetch N]
                   [--drain-timeout S] [--no-gc-tuning] [--broker URL] [--backend URL]
                   [--middleware NAME ...]

Every command takes ``--log-level LEVEL`` and ``--log-format {text,json}``, before or after
its name.
    chicory plugins
    chicory dead {list,replay,delete,purge} MODULE:APP [--queue Q] [ID]
    chicory workers MODULE:APP
    chicory conformance TARGET
    chicory demo [--tasks N] [--broker URL]
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from chicory.app import BACKEND_ENV, BROKER_ENV, Chicory
from chicory.errors import ChicoryError
from chicory.logconfig import LOG_FORMATS, LOG_LEVELS, configure_logging
from chicory.plugins import BackendKind, PluginHost
from chicory.records import WorkerInfo, decode_record
from chicory.redact import redact_url

__all__ = ["load_app", "main"]


def load_app(spec: str) -> Chicory:
    """Import ``module:attribute`` (attribute defaults to ``app``) and return the app.

    Raises:
        ChicoryError: the module cannot be imported or the attribute is not a Chicory app.
    """
    module_name, _, attr = spec.partition(":")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ChicoryError(
            f"cannot import {module_name!r}: {exc}. Run from the directory that contains it, "
            "or install it"
        ) from exc
    app = getattr(module, attr or "app", None)
    if not isinstance(app, Chicory):
        raise ChicoryError(
            f"{spec!r} is not a Chicory app; point at one, like 'myproject.tasks:app'"
        )
    return app


def _logging_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """``--log-level`` and ``--log-format``: on the main parser with their defaults, and on
    each command's parser without (so they may come after the command's name too)."""
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default="INFO" if defaults else argparse.SUPPRESS,
        help="how much is logged on standard error (default INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text" if defaults else argparse.SUPPRESS,
        help="log lines as text, or as JSON objects (needs chicory-core[json-logs]) (default text)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chicory", description=__doc__.splitlines()[0])
    _logging_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    _logging_options(common, defaults=False)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    worker = command("worker", "run a worker for an app")
    worker.add_argument("app", help="MODULE:APP, e.g. myproject.tasks:app")
    worker.add_argument(
        "-q",
        "--queue",
        action="append",
        dest="queues",
        help="queue to consume (repeatable; default: the app's default queue)",
    )
    worker.add_argument(
        "-c", "--concurrency", type=int, default=10, help="tasks run at once (default 10)"
    )
    worker.add_argument(
        "--prefetch",
        type=int,
        default=None,
        help="deliveries held beyond running ones (default: concurrency)",
    )
    worker.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        help="seconds running tasks get to finish after SIGTERM/SIGINT (default 30)",
    )
    worker.add_argument(
        "--no-gc-tuning",
        dest="gc_tuning",
        action="store_false",
        help="leave Python's garbage collector at its defaults (see chicory.worker.tuning)",
    )
    worker.add_argument("--broker", help=f"broker URL (sets {BROKER_ENV} before import)")
    worker.add_argument("--backend", help=f"result backend URL (sets {BACKEND_ENV})")
    worker.add_argument(
        "--middleware",
        action="append",
        metavar="NAME",
        default=[],
        help="enable a middleware an installed plugin offers, after the app's own "
        "(repeatable; 'chicory plugins' lists them)",
    )

    command("plugins", "list installed brokers, result backends and middleware")

    dead = command("dead", "inspect and manage dead letters")
    dead.add_argument("action", choices=["list", "replay", "delete", "purge"], help="what to do")
    dead.add_argument("app", help="MODULE:APP")
    dead.add_argument("id", nargs="?", help="dead letter id (replay, delete)")
    dead.add_argument("-q", "--queue", default=None, help="queue (default: the app's default)")
    dead.add_argument(
        "--limit", type=int, default=100, help="most dead letters to list (default 100)"
    )

    workers = command("workers", "list live workers from their heartbeats")
    workers.add_argument("app", help="MODULE:APP")

    conformance = command("conformance", "run the conformance suite on a broker")
    conformance.add_argument("target", help="broker URL or plugin name, e.g. memory://")
    conformance.add_argument(
        "-v", "--verbose", action="store_true", help="show pytest's output and full failures"
    )

    demo = command("demo", "run tasks of both delivery modes through a worker")
    demo.add_argument("--tasks", type=int, default=300, help="tasks to enqueue (default 300)")
    demo.add_argument("--broker", default="memory://", help="broker URL (default memory://)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code."""
    args = _parser().parse_args(argv)
    try:
        configure_logging(args.log_level, args.log_format)
        return _dispatch(args)
    except ChicoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BaseExceptionGroup as group:
        errors, rest = group.split(ChicoryError)
        if errors is None or rest is not None:
            raise
        for error in _leaves(errors):
            print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _leaves(group: BaseExceptionGroup[ChicoryError]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "worker":
        return _worker(args)
    if args.command == "plugins":
        return _plugins()
    if args.command == "dead":
        return anyio.run(_dead, args)
    if args.command == "workers":
        return anyio.run(_workers, args)
    if args.command == "conformance":
        from chicory.testing.runner import run_conformance

        return run_conformance(args.target, verbose=args.verbose)
    if args.command == "demo":
        from chicory.demo import run_demo

        return anyio.run(run_demo, args.tasks, args.broker)
    raise AssertionError(args.command)


def _worker(args: argparse.Namespace) -> int:
    from chicory.worker import Worker, tune_gc

    if args.broker:
        os.environ[BROKER_ENV] = args.broker
    if args.backend:
        os.environ[BACKEND_ENV] = args.backend
    app = load_app(args.app)
    if args.broker and app.broker_description != redact_url(args.broker):
        raise ChicoryError(
            f"--broker {redact_url(args.broker)} was given, but the app names its broker "
            f"explicitly ({app.broker_description}); create it with Chicory() to let "
            f"{BROKER_ENV} or --broker choose"
        )
    for name in args.middleware:
        app.add_middleware(name)
    if not app.broker.capabilities.shared:
        logging.getLogger("chicory.worker").warning(
            "broker %s is process-local: only tasks enqueued in this process reach this "
            "worker, and pending work is lost when it exits. Use a shared broker such as "
            "redis:// for real deployments.",
            app.broker_description,
        )
    worker = Worker(
        app,
        queues=args.queues,
        concurrency=args.concurrency,
        prefetch=args.prefetch,
        drain_timeout=args.drain_timeout,
    )
    if args.gc_tuning:
        tune_gc()
    worker.run()
    return 0


def _plugins() -> int:
    host = PluginHost()
    for kind in BackendKind:
        print(f"{kind.value}s:")
        items = host.installed(kind)
        if not items:
            print("  (none installed)")
        for item in items:
            schemes = ", ".join(f"{s}://" for s in item.spec.schemes)
            origin = item.distribution or item.plugin
            print(f"  {item.spec.name:<12} {schemes:<28} {origin}")
            if item.spec.description:
                print(f"  {'':<12} {item.spec.description}")
    print("middleware:")
    offered = host.middleware()
    if not offered:
        print("  (none installed)")
    for entry in offered:
        print(f"  {entry.spec.name:<12} {'':<28} {entry.distribution or entry.plugin}")
        if entry.spec.description:
            print(f"  {'':<12} {entry.spec.description}")
    for name, error in sorted(host.broken.items()):
        print(f"broken plugin {name!r} (not loaded): {error}")
    return 0


async def _dead(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    queue = args.queue or app.default_queue
    async with app:
        broker = app.broker
        if args.action == "list":
            letters = await broker.dead_letters(queue, limit=args.limit)
            for letter in letters:
                print(
                    f"{letter.id}\t{letter.dead_at.isoformat()}\tdeliveries="
                    f"{letter.delivery_count}\t{letter.reason}"
                )
            print(f"{len(letters)} dead letter(s) in {queue!r}")
            return 0
        if args.action == "purge":
            print(f"purged {await broker.purge_dead_letters(queue)} dead letter(s)")
            return 0
        if not args.id:
            raise ChicoryError(f"'chicory dead {args.action}' needs a dead letter id")
        operation: Any = (
            broker.replay_dead_letter if args.action == "replay" else broker.delete_dead_letter
        )
        done = await operation(queue, args.id)
        print(f"{args.action}ed {args.id}" if done else f"no dead letter {args.id} in {queue!r}")
        return 0 if done else 1


async def _workers(args: argparse.Namespace) -> int:
    app = load_app(args.app)
    async with app:
        records = await app.backend.workers()
        for worker_id, data in sorted(records.items()):
            info = decode_record(data, WorkerInfo)
            print(
                f"{worker_id}\tqueues={','.join(info.queues)}\trunning={info.running}\t"
                f"processed={info.processed}\tseen={info.seen_at.isoformat()}"
            )
        print(f"{len(records)} live worker(s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
