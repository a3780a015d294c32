"""Every example in README.md and docs/ (subfolders included) runs as written.

* Every ```python block runs in a fresh interpreter, in a fresh directory, and must exit 0.
  Fragments that are not meant to run on their own use ```py or another language tag.
* A ```python block with a title (```python title="tasks.py") is a file, not a script: it is
  written into the directory where the page's other blocks run, and a dedicated test below
  runs the scenario the page describes around it (a worker in its own process, say). A page
  with such files must have that test, listed in SCENARIOS.
* Every ``chicory ...`` command line of a bash or console block parses with the real
  command's parser, so a renamed or removed option fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from chicory.cli import build_tree
from processes import delete_keys

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(\w+)([^\n]*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
TITLE = re.compile(r'title="([^"]+)"')
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
SCENARIOS = {"docs/getting-started.md": "test_getting_started_on_redis"}
"""Pages with titled files, and the test that runs the scenario around them."""


def _fences(path: Path) -> list[tuple[str, str, str]]:
    """``(language, title, code)`` of every fenced block of ``path``, in order."""
    found = []
    for match in FENCE.finditer(path.read_text()):
        title = TITLE.search(match.group(2))
        found.append((match.group(1), title.group(1) if title else "", match.group(3)))
    return found


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _files(path: Path) -> dict[str, str]:
    """The titled ```python blocks of a page: file name -> contents."""
    return {title: code for lang, title, code in _fences(path) if lang == "python" and title}


def _blocks() -> list[tuple[str, Path, str]]:
    found = []
    for path in PAGES:
        untitled = [code for lang, title, code in _fences(path) if lang == "python" and not title]
        for index, code in enumerate(untitled):
            found.append((f"{_name(path)}#{index + 1}", path, code))
    return found


BLOCKS = _blocks()


def test_docs_have_runnable_examples() -> None:
    names = [name for name, _, _ in BLOCKS]
    for page in ("README.md", "docs/delivery-modes.md", "docs/getting-started.md"):
        assert any(name.startswith(page + "#") for name in names), page
    assert any(name.startswith("docs/migrating/") for name in names)  # subfolders count


@pytest.mark.parametrize(("name", "path", "code"), BLOCKS, ids=[name for name, _, _ in BLOCKS])
def test_example_runs(name: str, path: Path, code: str, tmp_path: Path) -> None:
    for filename, contents in _files(path).items():
        (tmp_path / filename).write_text(contents)
    script = tmp_path / "example.py"
    script.write_text(code)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}"


def test_readme_links_point_at_files_of_the_repository() -> None:
    """README.md is read on a code host, outside the site's strict build: check its links."""
    targets = re.findall(r"\]\(([^)#\s]+)", (ROOT / "README.md").read_text())
    assert any(t.startswith("docs/") for t in targets)
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"


def test_every_page_with_files_has_a_scenario_test() -> None:
    with_files = {_name(path) for path in PAGES if _files(path)}
    assert with_files == set(SCENARIOS), (
        "a page shows titled ```python files; add a test that runs them and list it in SCENARIOS"
    )
    for test in SCENARIOS.values():
        assert callable(globals().get(test)), test


def _commands() -> list[tuple[str, str]]:
    found = []
    for path in PAGES:
        for lang, _, code in _fences(path):
            if lang not in {"bash", "console", "shell"}:
                continue
            for line in code.replace("\\\n", " ").splitlines():
                line = line.strip().removeprefix("$ ")
                if line.startswith("chicory "):
                    found.append((_name(path), line))
    return found


COMMANDS = _commands()


def test_docs_show_chicory_commands() -> None:
    assert len(COMMANDS) >= 10


@pytest.mark.parametrize(("page", "line"), COMMANDS, ids=[f"{p}: {c}" for p, c in COMMANDS])
def test_command_line_parses(page: str, line: str) -> None:
    argv = shlex.split(line, comments=True)[1:]
    try:
        build_tree().parse(argv)
    except SystemExit as exc:
        pytest.fail(f"{page}: `{line}` does not parse with the chicory command (exit {exc})")


def _text_after(page: str, marker: str) -> str:
    """The ```text block that follows the first block containing ``marker`` on ``page``."""
    fences = _fences(ROOT / page)
    for index, (_, _, code) in enumerate(fences):
        if marker in code:
            return next(c for lang, _, c in fences[index + 1 :] if lang == "text")
    raise AssertionError(f"{page} has no block containing {marker!r}")


def test_getting_started_on_redis(tmp_path: Path) -> None:
    """The getting-started page's Redis section, as a reader runs it: its tasks.py, its
    worker command in a process of its own, its producer, and the output the page shows."""
    page = ROOT / "docs/getting-started.md"
    for filename, contents in _files(page).items():
        (tmp_path / filename).write_text(contents)
    prefix = f"docs-{uuid.uuid4().hex[:12]}"
    env = {
        **os.environ,
        "CHICORY_BROKER_URL": f"redis://127.0.0.1:6379/0?key_prefix={prefix}",
        "PYTHONPATH": str(tmp_path),
    }
    env.pop("CHICORY_BACKEND_URL", None)
    (command,) = [line for name, line in COMMANDS if name == _name(page) and " worker " in line]
    chicory = Path(sys.executable).with_name("chicory")
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [str(chicory), *shlex.split(command)[1:]],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        done = subprocess.run(
            [sys.executable, "producer.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
        assert done.stdout == _text_after(_name(page), "python producer.py")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0  # the page says Ctrl-C / SIGTERM drains and exits
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
        log.close()
        delete_keys(prefix)
