"""``chicory worker``, ``plugins``, ``conformance``, ``demo`` and ``dashboard``."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import anyio

from chicory.app import BACKEND_ENV, BROKER_ENV, Chicory
from chicory.cli.inputs import VISIBLE, load_app, url_option
from chicory.cli.output import Out
from chicory.cli.parsing import Tree, add_app, add_json
from chicory.errors import ConfigurationError
from chicory.plugins import BackendKind, PluginHost
from chicory.redact import redact_url

__all__ = ["register"]

DASHBOARD_HINT = "pip install chicory-dashboard"
DASHBOARD_MODULE = "chicory_dashboard.server"
"""Where ``chicory dashboard`` finds the server (core never imports it otherwise)."""


def register(tree: Tree) -> None:
    """Add the commands of this module to ``tree``."""
    worker = tree.command("worker", "run a worker for an app", _worker)
    add_app(worker)
    worker.add_argument(
        "-q",
        "--queue",
        action="append",
        dest="queues",
        metavar="QUEUE",
        help="queue to consume (repeatable; default: the app's default queue)",
    )
    worker.add_argument("-c", "--concurrency", type=int, default=10, help="tasks run at once")
    worker.add_argument(
        "--prefetch",
        type=int,
        default=None,
        help="deliveries held beyond running ones (default: the concurrency)",
    )
    worker.add_argument(
        "--drain-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="seconds running tasks get to finish after SIGTERM or Ctrl-C, before unfinished "
        "at-least-once work is handed back",
    )
    worker.add_argument(
        "--heartbeat-interval",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="seconds between heartbeats (what chicory workers shows)",
    )
    worker.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="run N worker processes under a supervisor that restarts any that dies "
        "(default: 1, in this process, without a supervisor)",
    )
    worker.add_argument(
        "--max-tasks-per-child",
        type=int,
        metavar="N",
        help="recycle a worker process after it handled N deliveries: it drains and a fresh "
        "one starts (implies the supervisor; default: never)",
    )
    worker.add_argument(
        "--max-memory-per-child",
        type=int,
        metavar="MIB",
        help="recycle a worker process whose resident memory passes this many MiB "
        "(implies the supervisor; default: never)",
    )
    worker.add_argument(
        "--reload",
        action="store_true",
        help="for development: restart the worker processes when a .py file in the current "
        "directory or the app's changes (needs watchfiles: pip install "
        "'chicory-core[reload]')",
    )
    worker.add_argument(
        "--scheduler",
        action="store_true",
        help="also fire the app's periodic tasks, as 'chicory scheduler' does: from this "
        "process, or with --processes from the supervisor, one scheduler whatever the "
        "children do (safe on several workers: each fire is enqueued once; default: off)",
    )
    worker.add_argument(
        "--no-gc-tuning",
        dest="gc_tuning",
        action="store_false",
        help="leave Python's garbage collector at its defaults (default: tuned; see "
        "chicory.worker.tuning)",
    )
    broker = worker.add_mutually_exclusive_group()
    broker.add_argument(
        "--broker",
        metavar="URL",
        help=f"broker URL (sets {BROKER_ENV} before the app is imported; default: the "
        f"app's). {VISIBLE}",
    )
    broker.add_argument(
        "--broker-file",
        metavar="PATH",
        type=Path,
        help="read the broker URL from the first line of this file (a mounted secret, say): "
        "keeps its password out of the process list (default: none)",
    )
    backend = worker.add_mutually_exclusive_group()
    backend.add_argument(
        "--backend",
        metavar="URL",
        help=f"result backend URL (sets {BACKEND_ENV}; default: the app's). {VISIBLE}",
    )
    backend.add_argument(
        "--backend-file",
        metavar="PATH",
        type=Path,
        help="read the result backend URL from the first line of this file (default: none)",
    )
    worker.add_argument(
        "--middleware",
        action="append",
        default=[],
        metavar="NAME",
        help="enable a middleware an installed plugin offers, after the app's own "
        "(repeatable; 'chicory plugins' lists them; default: none)",
    )

    plugins = tree.command(
        "plugins", "list installed plugins, brokers and result backends", _plugins
    )
    add_json(plugins)

    conformance = tree.command(
        "conformance",
        "run the conformance suite on brokers, one table for all (docs/conformance.md)",
        _conformance,
    )
    conformance.add_argument(
        "target",
        metavar="TARGET",
        nargs="+",
        help="broker URL or plugin name, e.g. memory:// (several give one table)",
    )
    conformance.add_argument(
        "-k",
        dest="keyword",
        metavar="EXPR",
        help="run only the tests matching this pytest -k expression, guarantee ids included "
        "(default: every test)",
    )
    conformance.add_argument(
        "-v", "--verbose", action="store_true", help="show every test as it runs"
    )

    demo = tree.command("demo", "run tasks of both delivery modes through a worker", _demo)
    demo.add_argument("--tasks", type=int, default=300, help="tasks to enqueue")
    demo_broker = demo.add_mutually_exclusive_group()
    demo_broker.add_argument(
        "--broker",
        metavar="URL",
        help=f"broker URL to run the demo on (default: memory://). {VISIBLE}",
    )
    demo_broker.add_argument(
        "--broker-file",
        metavar="PATH",
        type=Path,
        help="read the broker URL from the first line of this file (default: none)",
    )

    dashboard = tree.command(
        "dashboard",
        f"serve the web dashboard for an app (needs chicory-dashboard: {DASHBOARD_HINT})",
        _dashboard,
    )
    add_app(dashboard)
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on")
    dashboard.add_argument("--port", type=int, default=8765, help="port to listen on")
    dashboard.add_argument(
        "--allow-actions",
        action="store_true",
        help=(
            "let the dashboard replay and delete dead letters, cancel tasks and remove"
            " delayed ones (default: off, read-only)"
        ),
    )


def _worker(args: argparse.Namespace) -> int:
    from chicory.worker import Worker, tune_gc

    broker = url_option(args.broker, args.broker_file, "--broker-file")
    backend = url_option(args.backend, args.backend_file, "--backend-file")
    if broker:
        os.environ[BROKER_ENV] = broker
    if backend:
        os.environ[BACKEND_ENV] = backend
    for option, value in (
        ("--processes", args.processes),
        ("--max-tasks-per-child", args.max_tasks_per_child),
        ("--max-memory-per-child", args.max_memory_per_child),
    ):
        if value is not None and value < 1:
            raise ConfigurationError(f"{option} must be at least 1, got {value}")
    app = load_app(args.app)
    if broker and app.broker_description != redact_url(broker):
        raise ConfigurationError(
            f"--broker {redact_url(broker)} was given, but the app names its broker "
            f"explicitly ({app.broker_description}); create it with Chicory() to let "
            f"{BROKER_ENV} or --broker choose"
        )
    for name in args.middleware:
        app.add_middleware(name)
    options: dict[str, Any] = {
        "queues": args.queues,
        "concurrency": args.concurrency,
        "prefetch": args.prefetch,
        "drain_timeout": args.drain_timeout,
        "heartbeat_interval": args.heartbeat_interval,
    }
    if (
        args.processes > 1
        or args.reload
        or args.max_tasks_per_child is not None
        or args.max_memory_per_child is not None
    ):
        return _supervise(args, app, options)
    if not app.broker.capabilities.shared:
        logging.getLogger("chicory.worker").warning(
            "broker %s is process-local: only tasks enqueued in this process reach this "
            "worker, and pending work is lost when it exits. Use a shared broker such as "
            "redis:// for real deployments.",
            app.broker_description,
        )
    worker = Worker(app, **options)
    if args.gc_tuning:
        tune_gc()
    if args.scheduler:
        from chicory.scheduling.runner import Scheduler, serve_with_worker

        scheduler = Scheduler(app)  # fails now if the app declares no schedules
        anyio.run(serve_with_worker, worker, scheduler)
        return 0
    worker.run()
    return 0


def _supervise(args: argparse.Namespace, app: Chicory, options: dict[str, Any]) -> int:
    from chicory.processes import ChildConfig, Supervisor
    from chicory.processes.reload import ReloadWatcher

    if not app.broker.capabilities.shared:
        raise ConfigurationError(
            f"worker processes need a shared broker, and {app.broker_description} is "
            "process-local (each process would have queues of its own); use redis:// or "
            "another shared broker"
        )
    config = ChildConfig(
        app=args.app,
        worker_options=options,
        max_tasks=args.max_tasks_per_child,
        max_memory=None if args.max_memory_per_child is None else args.max_memory_per_child * 2**20,
        gc_tuning=args.gc_tuning,
        log_level=logging.getLevelName(logging.getLogger().level),
        log_format=args.log_format,
        middleware=list(args.middleware),
        cwd=os.getcwd(),
    )
    paths = reload_paths(args.app) if args.reload else []
    if paths:
        ReloadWatcher(paths)  # fails now, with the hint, if watchfiles is missing
    scheduler = None
    if args.scheduler:
        from chicory.scheduling.runner import Scheduler

        scheduler = Scheduler(app)  # fails now if the app declares no schedules
        if paths:
            logging.getLogger("chicory.scheduler").warning(
                "--reload restarts the worker processes, not the scheduler: it keeps the "
                "schedules it read at start (restart the command after changing them)"
            )
    supervisor = Supervisor(
        config, processes=args.processes, reload_paths=paths, scheduler=scheduler
    )
    return supervisor.run()


def reload_paths(spec: str) -> list[str]:
    """What ``--reload`` watches: the current directory, and the app module's own directory
    when it is elsewhere."""
    paths = [os.getcwd()]
    module = sys.modules.get(spec.partition(":")[0])
    origin = getattr(module, "__file__", None)
    if origin:
        here = os.path.dirname(os.path.abspath(origin))
        if not here.startswith(paths[0]):
            paths.append(here)
    return paths


def _plugins(args: argparse.Namespace) -> int:
    host = PluginHost()
    out = Out(json=args.json)
    kinds = {kind: host.installed(kind) for kind in BackendKind}
    if out.json_mode:
        out.json(
            {
                "plugins": [
                    {"name": name, "distribution": dist, "description": doc}
                    for name, dist, doc in host.loaded()
                ],
                **{
                    f"{kind.value.replace(' ', '_')}s": [
                        {
                            "name": item.spec.name,
                            "schemes": list(item.spec.schemes),
                            "distribution": item.distribution,
                            "description": item.spec.description,
                        }
                        for item in items
                    ]
                    for kind, items in kinds.items()
                },
                "middleware": [
                    {
                        "name": item.spec.name,
                        "distribution": item.distribution,
                        "description": item.spec.description,
                    }
                    for item in host.middleware()
                ],
                "broken": dict(sorted(host.broken.items())),
            }
        )
        return 0
    for kind, items in kinds.items():
        print(f"{kind.value}s:")
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
    print("plugins:")
    for name, dist, doc in host.loaded():
        print(f"  {name:<12} {dist or '':<28} {doc}")
    for name, error in sorted(host.broken.items()):
        print(f"broken plugin {name!r} (not loaded): {error}")
    return 0


def _conformance(args: argparse.Namespace) -> int:
    from chicory.testing.runner import run_conformance

    return run_conformance(args.target, verbose=args.verbose, keyword=args.keyword)


def _demo(args: argparse.Namespace) -> int:
    from chicory.demo import run_demo

    broker = url_option(args.broker, args.broker_file, "--broker-file") or "memory://"
    return anyio.run(run_demo, args.tasks, broker)


def _dashboard(args: argparse.Namespace) -> int:
    try:
        server = importlib.import_module(DASHBOARD_MODULE)
    except ImportError as exc:
        raise ConfigurationError(
            f"the dashboard is its own package and is not installed ({exc}); install it "
            f"with: {DASHBOARD_HINT}"
        ) from None
    app = load_app(args.app)
    options: dict[str, Any] = {"allow_actions": args.allow_actions}
    server.serve(app, host=args.host, port=args.port, log_level=args.log_level, **options)
    return 0
