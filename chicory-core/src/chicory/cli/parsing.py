"""The ``chicory`` command tree: argparse parsers, one module per noun, parsed the same way.

Every command is a leaf parser (``chicory queues``, ``chicory dead list``...) built by a
command module's ``register`` function, with a ``handler`` default that runs it. Parsing
finds the leaf from the command words, then parses the rest with
:meth:`~argparse.ArgumentParser.parse_intermixed_args`, so options may come before or after
positional arguments (``chicory dead replay APP -q billing ID`` and
``chicory dead replay -q billing APP ID`` are the same). Every option has help text that
ends with its default (:class:`Formatter` adds it where the text does not say it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any, Final

__all__ = [
    "COMMON",
    "Formatter",
    "Tree",
    "add_app",
    "add_json",
    "parse",
]

Handler = Callable[[argparse.Namespace], int]

LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR")


class Formatter(argparse.HelpFormatter):
    """Help that names every option's default: appended as ``(default: X)`` unless the help
    text already says ``default``; flags read ``(default: off)``."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if not action.option_strings or "default" in text.lower():
            return text
        default = action.default
        if default is argparse.SUPPRESS or (action.nargs == 0 and default is None):
            return text
        if isinstance(action, argparse._StoreTrueAction):
            shown = "on" if default else "off"
        elif isinstance(action, argparse._StoreFalseAction):
            shown = "off" if not default else "on"
        elif default is None:
            return text
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})"


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        default="WARNING",
        type=str.upper,
        choices=LOG_LEVELS,
        help="how much chicory logs on standard error (default: WARNING; INFO for worker "
        "and dashboard)",
    )
    common.add_argument(
        "--log-format",
        default="text",
        choices=("text", "json"),
        help="log lines as text, or as one JSON object per line (needs chicory-core[json-logs])",
    )
    return common


COMMON: Final = _common()
"""Options every command accepts, anywhere on its command line."""


def add_app(parser: argparse.ArgumentParser) -> None:
    """Add the ``APP`` positional argument."""
    parser.add_argument(
        "app", metavar="APP", help="your app, as MODULE:ATTRIBUTE (e.g. shop.tasks:app)"
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    """Add ``--json``."""
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON on standard output instead of a table (see docs/operations.md)",
    )


class Tree:
    """The parsers of every command, and the handlers that run them."""

    def __init__(self) -> None:
        self.root = argparse.ArgumentParser(
            prog="chicory",
            description="Chicory: run workers, inspect and repair queues, dead letters and tasks.",
            formatter_class=Formatter,
            parents=[COMMON],
        )
        self._commands = self.root.add_subparsers(dest="command", metavar="COMMAND", required=True)
        self._groups: dict[str, argparse._SubParsersAction[argparse.ArgumentParser]] = {}
        self.leaves: dict[tuple[str, ...], argparse.ArgumentParser] = {}

    def command(
        self, name: str, help: str, handler: Handler, **kwargs: Any
    ) -> argparse.ArgumentParser:
        """Add the leaf command ``chicory NAME``."""
        parser = self._commands.add_parser(
            name,
            help=help,
            description=kwargs.pop("description", help),
            formatter_class=Formatter,
            parents=[COMMON],
            **kwargs,
        )
        parser.set_defaults(handler=handler)
        self.leaves[(name,)] = parser
        return parser

    def group(self, name: str, help: str) -> None:
        """Add the command group ``chicory NAME ACTION``."""
        parser = self._commands.add_parser(
            name, help=help, description=help, formatter_class=Formatter
        )
        self._groups[name] = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(self, group: str, name: str, help: str, handler: Handler) -> argparse.ArgumentParser:
        """Add the leaf command ``chicory GROUP NAME``."""
        parser = self._groups[group].add_parser(
            name, help=help, description=help, formatter_class=Formatter, parents=[COMMON]
        )
        parser.set_defaults(handler=handler)
        self.leaves[(group, name)] = parser
        return parser

    def _path(self, argv: Sequence[str]) -> tuple[tuple[str, ...], list[str]] | None:
        """The command words of ``argv`` and the rest, or ``None`` to let the root decide."""
        rest: list[str] = []
        words: list[str] = []
        tokens = list(argv)
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if not words and token == "--log-level" and index + 1 < len(tokens):
                rest += tokens[index : index + 2]
                index += 2
                continue
            if not words and token.startswith("--log-level="):
                rest.append(token)
            elif token.startswith("-") and not words:
                return None  # help, or an unknown option: the root parser answers
            elif not words or (words[0] in self._groups and len(words) == 1):
                if token.startswith("-"):
                    return None
                words.append(token)
            else:
                rest += tokens[index:]
                break
            index += 1
        path = tuple(words)
        return (path, rest) if path in self.leaves else None

    def parse(self, argv: Sequence[str]) -> argparse.Namespace:
        """Parse a command line (see the module docstring).

        Raises:
            SystemExit: help was asked for (code 0) or the line is wrong (code 2).
        """
        found = self._path(argv)
        if found is None:
            return self.root.parse_args(argv)
        path, rest = found
        args = self.leaves[path].parse_intermixed_args(rest)
        args.command = path[0]
        if len(path) > 1:
            args.action = path[1]
        return args


def parse(tree: Tree, argv: Sequence[str]) -> argparse.Namespace:
    """``tree.parse(argv)``."""
    return tree.parse(argv)
