"""The ``chicory`` command line: thin faces over :class:`chicory.admin.Admin` and the worker.

Commands (``chicory COMMAND --help`` for each; ``docs/operations.md`` is the reference)::

    chicory worker APP          run a worker
    chicory queues APP          every queue: ready, delayed, in flight, dead, consumers, age
    chicory workers APP         live workers and their counts
    chicory dead list|show|replay|delete|purge APP
    chicory send APP TASK       enqueue one run of a task
    chicory result APP TASK_ID  a task's state and result
    chicory cancel APP TASK_ID  cancel a task (queued, delayed or running)
    chicory delayed list|remove APP
    chicory dashboard APP       the web dashboard (chicory-dashboard)
    chicory plugins             installed plugins, brokers and result backends
    chicory conformance TARGET...  the broker conformance suite
    chicory demo                both delivery modes through a worker

Exit codes: 0 when the command did what was asked; 1 when it failed (the broker is
unreachable, a dead letter is gone, the task failed or did not finish in time); 2 for a usage
error (a wrong option, an app that does not load, an unknown task, bad JSON). Data goes to
standard output (tables, or JSON with ``--json``); summaries, progress and errors go to
standard error.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from chicory.cli import (
    cancel_commands,
    dead_commands,
    look_commands,
    run_commands,
    schedule_commands,
    task_commands,
)
from chicory.cli.inputs import load_app
from chicory.cli.output import rich_available, stderr_console
from chicory.cli.parsing import Tree
from chicory.errors import ArgumentValidationError, ChicoryError, ConfigurationError
from chicory.logconfig import configure_logging, make_formatter
from chicory.plugins import PluginHost
from chicory.redact import RedactingFormatter, redact_text

__all__ = ["build_tree", "exit_code", "load_app", "main"]

_CHATTY = (
    "worker",
    "dashboard",
    "demo",
    "scheduler",
)  # commands whose INFO lines an operator wants


def build_tree() -> Tree:
    """Every command's parser."""
    tree = Tree()
    run_commands.register(tree)
    look_commands.register(tree)
    dead_commands.register(tree)
    task_commands.register(tree)
    cancel_commands.register(tree)
    schedule_commands.register(tree)
    PluginHost().add_commands(tree)  # plugins' own groups (chicory postgres ...)
    return tree


def exit_code(error: BaseException) -> int:
    """The exit code for an error: 2 for a usage error, 1 for any other failure."""
    if isinstance(error, ConfigurationError | ArgumentValidationError):
        return 2
    return 1


def _setup_logging(level: str, command: str, explicit: bool, fmt: str = "text") -> None:
    """Log at ``level`` on standard error; ``fmt`` ``json`` writes JSON lines (see
    :mod:`chicory.logconfig`).

    Raises:
        ConfigurationError: ``json`` without python-json-logger installed.
    """
    if not explicit and command in _CHATTY:
        level = "INFO"
    if fmt == "json":
        configure_logging(level, "json")
        return
    # Every line goes through RedactingFormatter: no password of a URL in a log message or
    # a traceback reaches the terminal or the log collector.
    if sys.stderr.isatty() and rich_available():
        from rich.logging import RichHandler

        handler: logging.Handler = RichHandler(console=stderr_console(), show_path=False)
        handler.setFormatter(RedactingFormatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler()
        handler.setFormatter(make_formatter("text"))
    logging.basicConfig(level=level, handlers=[handler])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit code (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_tree().parse(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    explicit = any(a == "--log-level" or a.startswith("--log-level=") for a in argv)
    try:
        _setup_logging(args.log_level, args.command, explicit, args.log_format)
        code: int = args.handler(args)
    except (ChicoryError, LookupError) as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return exit_code(exc)
    except BaseExceptionGroup as group:
        errors, rest = group.split((ChicoryError, LookupError))
        if errors is None or rest is not None:
            raise
        leaves = _leaves(errors)
        for error in leaves:
            print(f"error: {redact_text(str(error))}", file=sys.stderr)
        return max(exit_code(error) for error in leaves)
    except KeyboardInterrupt:
        return 130
    return code


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        found.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return found


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
