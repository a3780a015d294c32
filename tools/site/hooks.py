"""MkDocs hooks of Chicory's site (``hooks:`` in ``mkdocs.yml``).

* The CLI reference is generated from the ``chicory`` command's argparse parsers at build
  time: a page holding the marker ``<!-- chicory-cli-reference -->`` gets, in its place, one
  section per command with its usage, arguments, options, defaults and help. It cannot
  drift from the code, and an option added without a ``help=`` text fails the strict build.
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

__all__ = ["CLI_MARKER", "cli_reference", "on_page_markdown"]

CLI_MARKER = "<!-- chicory-cli-reference -->"

log = logging.getLogger("mkdocs.plugins.chicory.cli")


def on_page_markdown(markdown: str, *, page: Any, config: Any, files: Any) -> str:
    """Replace the CLI marker of a page with the generated reference."""
    if CLI_MARKER not in markdown:
        return markdown
    from chicory.cli import build_tree  # the parsers the `chicory` command itself runs

    text, problems = cli_reference(build_tree().root)
    for problem in problems:
        log.warning("%s: %s", page.file.src_uri, problem)
    return markdown.replace(CLI_MARKER, text)


def cli_reference(parser: argparse.ArgumentParser) -> tuple[str, list[str]]:
    """Return Markdown for ``parser`` and its sub-commands, and what lacks a help text."""
    lines: list[str] = []
    problems: list[str] = []
    _render(parser, None, lines, problems)
    return "\n".join(lines) + "\n", problems


def _render(
    parser: argparse.ArgumentParser,
    summary: str | None,
    lines: list[str],
    problems: list[str],
) -> None:
    lines += [f"## `{parser.prog}`", ""]
    if summary:
        lines += [summary[0].upper() + summary[1:] + ".", ""]
    elif parser.description:
        lines += [parser.description, ""]
    lines += ["```text", _usage(parser), "```", ""]
    positionals = [
        a
        for a in parser._actions
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
    ]
    options = [a for a in parser._actions if a.option_strings and a.help != argparse.SUPPRESS]
    subcommands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if positionals:
        lines += ["| argument | meaning |", "|---|---|"]
        for action in positionals:
            lines.append(
                f"| `{action.metavar or action.dest}` | {_help(parser, action, problems)} |"
            )
        lines.append("")
    if options:
        lines += ["| option | default | meaning |", "|---|---|---|"]
        for action in options:
            flags = ", ".join(f"`{flag}`" for flag in action.option_strings)
            if action.nargs != 0:
                flags += f" `{_metavar(action)}`"
            lines.append(f"| {flags} | {_default(action)} | {_help(parser, action, problems)} |")
        lines.append("")
    for action in subcommands:
        helps = {choice.dest: choice.help for choice in action._choices_actions}
        lines += ["| command | what it does |", "|---|---|"]
        for name in action.choices:
            lines.append(f"| [`{name}`](#{_anchor(parser.prog, name)}) | {helps.get(name) or ''} |")
        lines.append("")
        for name, child in action.choices.items():
            if not helps.get(name):
                problems.append(f"the {parser.prog} {name} command has no help text")
            _render(child, helps.get(name), lines, problems)


def _anchor(prog: str, name: str) -> str:
    # The toc extension's slug of the heading "`chicory worker`".
    return f"{prog} {name}".lower().replace(" ", "-")


def _usage(parser: argparse.ArgumentParser) -> str:
    formatter = argparse.HelpFormatter(parser.prog, width=88)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help().strip()


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return str(action.metavar)
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper()


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 or action.default is None or action.default == argparse.SUPPRESS:
        return ""
    return f"`{action.default}`"


def _help(parser: argparse.ArgumentParser, action: argparse.Action, problems: list[str]) -> str:
    if action.help is None:
        name = "/".join(action.option_strings) or action.dest
        problems.append(f"{parser.prog}: {name} has no help text")
        return ""
    text = action.help % {"default": action.default, "prog": parser.prog}
    if action.choices is not None and not action.option_strings:
        text += " (one of " + ", ".join(f"`{c}`" for c in action.choices) + ")"
    return text.replace("|", "\\|")
