"""Every guarantee id and every hook is documented, with the exact hook signatures."""

from __future__ import annotations

import importlib
import inspect
import textwrap
from pathlib import Path

import pytest

import chicory.testing
from chicory.plugins import hookspecs
from chicory.testing import GUARANTEES, SUITE_MODULES

DOCS = Path(__file__).resolve().parents[2] / "docs"

for _module in SUITE_MODULES:
    importlib.import_module(_module)

HOOKS = sorted(name for name in vars(hookspecs) if name.startswith("chicory_"))


def _signature(name: str) -> str:
    text = f"def {name}{inspect.signature(getattr(hookspecs, name))}"
    return text.replace("'", "")


@pytest.mark.parametrize("gid", sorted(GUARANTEES))
def test_every_guarantee_is_documented(gid: str) -> None:
    guarantee = GUARANTEES[gid]
    row = next(
        (
            line
            for line in (DOCS / "conformance.md").read_text().splitlines()
            if line.startswith(f"| `{gid}` |")
        ),
        None,
    )
    assert row is not None, f"{gid} has no row in the tables of docs/conformance.md"
    assert f"| {guarantee.level.value} |" in row, f"{gid}: level differs in the docs: {row}"
    for requirement in guarantee.requires:
        for capability in requirement.split("|"):
            assert f"`{capability}`" in row, f"{gid}: the docs omit that it needs {capability}"
    for foundation in guarantee.rests_on:
        assert f"`{foundation}`" in row, f"{gid}: the docs omit that it rests on {foundation}"


def test_every_suite_is_documented() -> None:
    text = (DOCS / "conformance.md").read_text()
    suites = [name for name in chicory.testing.__all__ if name.endswith("Suite")]
    assert len(suites) == 15
    for suite in suites:
        assert f"`{suite}`" in text, f"{suite} is missing from docs/conformance.md"


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook: str) -> None:
    text = (DOCS / "plugins.md").read_text()
    assert _signature(hook) in text, f"docs/plugins.md lacks {_signature(hook)!r}"


def test_the_hooks_are_the_ones_expected() -> None:
    assert len(HOOKS) == 14


@pytest.mark.parametrize("page", ["conformance.md", "plugins.md"])
def test_python_blocks_compile(page: str) -> None:
    text = (DOCS / page).read_text()
    blocks = [part.split("```", 1)[0] for part in text.split("```python\n")[1:]]
    assert blocks, f"{page} shows no Python"
    for block in blocks:
        compile(textwrap.dedent(block), f"{page} block", "exec")


def _squeeze(text: str) -> str:
    return "\n".join(line.strip() for line in text.splitlines() if line.strip())


def test_the_documented_harness_is_the_example_plugins() -> None:
    example = DOCS.parent / "examples" / "chicory-example-plugin" / "tests" / "conftest.py"
    harness = "return BrokerHarness(" + example.read_text().split("return BrokerHarness(", 1)[1]
    for page in ("conformance.md", "plugins.md"):
        assert _squeeze(harness) in _squeeze((DOCS / page).read_text()), (
            f"{page} shows another harness than the example plugin's tests/conftest.py"
        )


def test_the_documented_pyproject_is_the_example_plugins() -> None:
    example = DOCS.parent / "examples" / "chicory-example-plugin" / "pyproject.toml"
    blocks = [
        part.split("```", 1)[0] for part in (DOCS / "plugins.md").read_text().split("```toml\n")[1:]
    ]
    assert example.read_text() in blocks, (
        "docs/plugins.md must show the example plugin's pyproject.toml whole (copy-pasteable)"
    )
