"""The command reference in docs/operations.md is what the parsers say, option for option."""

from __future__ import annotations

from pathlib import Path

from chicory.cli import build_tree
from chicory.cli.reference import END, START, render

PAGE = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def test_the_reference_matches_the_parsers() -> None:
    text = PAGE.read_text()
    block = START + text.partition(START)[2].partition(END)[0] + END
    assert block == render(), (
        "docs/operations.md's command reference is out of date; run "
        "'python -m chicory.cli.reference docs/operations.md'"
    )


def test_every_command_and_option_is_in_the_reference() -> None:
    reference = render()
    for path, parser in build_tree().leaves.items():
        assert f"### `chicory {' '.join(path)}`" in reference
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in reference, f"chicory {' '.join(path)} {option}"
