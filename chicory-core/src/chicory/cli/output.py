"""How commands print: data on standard output, summaries and progress on standard error.

Tables and progress bars come from ``rich`` (the ``chicory-core[cli]`` extra), imported only
when a command prints one. Without ``rich``, or when the stream is not a terminal (a pipe, a
file), a table is printed as tab-separated lines, header first, and a progress bar as a
final count: what scripts want (``--json`` is better still: it is the stable interface).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson

__all__ = [
    "Out",
    "age",
    "moment",
    "rich_available",
    "stderr_console",
]

_consoles: dict[str, Any] = {}


def rich_available() -> bool:
    """Whether ``rich`` is installed."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def stderr_console() -> Any:
    """The one ``rich`` console on standard error (logging and progress share it)."""
    if "stderr" not in _consoles:
        from rich.console import Console

        _consoles["stderr"] = Console(stderr=True)
    return _consoles["stderr"]


def _stdout_console() -> Any:
    from rich.console import Console

    return Console()  # resolves sys.stdout when it prints


def moment(value: datetime | None) -> str:
    """A time for tables: UTC, to the second."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def age(seconds: float | None) -> str:
    """A duration for tables: ``4s``, ``2m10s``, ``3h5m``, ``2d4h``."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


class Out:
    """What one command prints.

    Args:
        json: The command was given ``--json``.
    """

    def __init__(self, *, json: bool = False) -> None:
        self.json_mode = json

    def json(self, value: Any) -> None:
        """Print ``value`` as one JSON document on standard output."""
        sys.stdout.write(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode() + "\n")
        sys.stdout.flush()

    def json_line(self, value: Any) -> None:
        """Print ``value`` as one line of JSON (for ``--watch``: JSON Lines)."""
        sys.stdout.write(orjson.dumps(value).decode() + "\n")
        sys.stdout.flush()

    def note(self, text: str) -> None:
        """A summary line on standard error."""
        print(text, file=sys.stderr, flush=True)

    def lines(self, values: Sequence[str]) -> None:
        """Plain lines of data on standard output."""
        for value in values:
            print(value)

    def rich_tables(self) -> bool:
        """Whether tables are drawn with ``rich`` (a terminal, and ``rich`` installed)."""
        return _is_terminal(sys.stdout) and rich_available()

    def renderable(
        self, headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
    ) -> Any:
        """A ``rich`` table of ``rows`` (for :meth:`table` and live views)."""
        from rich import box
        from rich.table import Table

        table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
        for header in headers:
            numeric = header.isupper() and header in _NUMERIC
            table.add_column(
                header,
                justify="right" if numeric else "left",
                overflow="ellipsis" if header in _LONG else "fold",
                no_wrap=header in _LONG,
                max_width=60 if header in _LONG else None,
            )
        for row in rows:
            table.add_row(*(_cell(value) for value in row))
        return table

    def tsv(self, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
        """``rows`` as tab-separated lines, header first."""

        def clean(value: Any) -> str:
            return _cell(value).replace("\t", " ").replace("\n", " ")

        return "\n".join("\t".join(clean(v) for v in line) for line in [headers, *rows])

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None
    ) -> None:
        """Print a table on standard output (see the module docstring)."""
        if self.rich_tables():
            _stdout_console().print(self.renderable(headers, rows, title=title))
        else:
            print(self.tsv(headers, rows), flush=True)

    @contextmanager
    def progress(self, label: str, total: int) -> Iterator[Any]:
        """A progress bar on standard error; yields ``update(done, total)``."""
        if total <= 1 or not (_is_terminal(sys.stderr) and rich_available()):
            state = {"done": 0}

            def count(done: int, _total: int) -> None:
                state["done"] = done

            yield count
            if total > 1:
                self.note(f"{label}: {state['done']}/{total}")
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=stderr_console(),
        ) as bar:
            task = bar.add_task(label, total=total)

            def advance(done: int, new_total: int) -> None:
                bar.update(task, completed=done, total=new_total)

            yield advance


_NUMERIC = frozenset(
    {
        "READY",
        "DELAYED",
        "IN FLIGHT",
        "DEAD",
        "CONSUMERS",
        "PID",
        "CONCURRENCY",
        "ACTIVE",
        "PROCESSED",
        "FAILED",
        "RETRIED",
        "DELIVERIES",
        "PURGED",
        "ATTEMPT",
    }
)
_LONG = frozenset({"REASON", "TRACEBACK", "ARGS", "DETAIL"})
