"""The documentation site: it builds strictly, the strict build refuses broken pages, and the
built site works in a real browser (navigation and search).

The site is built from a copy of ``docs/`` and ``mkdocs.yml`` (the packages and site tools
are linked, not copied), so a test can break one page without touching the repository.
The browser test runs Debian's Chromium headless through chromedriver; ``./scripts/check``
installs both when missing, and a missing browser fails the test rather than skipping it.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
LINKED = ("chicory-core", "chicory-memory", "chicory-redis", "examples", "tools")


def make_project(where: Path) -> Path:
    """Lay out a buildable copy of the site's sources under ``where``; return its root."""
    project = where / "project"
    project.mkdir()
    shutil.copy(ROOT / "mkdocs.yml", project / "mkdocs.yml")
    shutil.copytree(ROOT / "docs", project / "docs")
    for name in LINKED:
        (project / name).symlink_to(ROOT / name)
    return project


def build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    """Run ``mkdocs build --strict`` on ``project`` into ``site``."""
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site built strictly from an unmodified copy of the sources."""
    where = tmp_path_factory.mktemp("site")
    done = build(make_project(where), where / "site")
    assert done.returncode == 0, f"the site does not build strictly:\n{done.stderr}"
    return where / "site"


def test_the_site_builds_strictly_with_every_page(site: Path) -> None:
    pages = sorted((ROOT / "docs").rglob("*.md"))
    for page in pages:
        relative = page.relative_to(ROOT / "docs").with_suffix("")
        built = site / (relative.parent if relative.name == "index" else relative) / "index.html"
        assert built.is_file(), f"{page.relative_to(ROOT)} was not built"
    reference = (site / "reference" / "tasks" / "index.html").read_text()
    assert 'id="chicory.RetryPolicy"' in reference  # generated from the docstrings
    cli = (site / "reference" / "cli" / "index.html").read_text()
    assert "--drain-timeout" in cli  # generated from the argparse parsers


def _append(page: str, text: str) -> Callable[[Path], None]:
    def inject(docs: Path) -> None:
        with (docs / page).open("a") as out:
            out.write(text)

    return inject


def _orphan(docs: Path) -> None:
    (docs / "orphan.md").write_text("# A page nobody added to the nav\n")


DEFECTS: dict[str, tuple[Callable[[Path], None], str]] = {
    "broken link": (
        _append("getting-started.md", "\nSee [the missing page](no-such-page.md).\n"),
        "no-such-page.md",
    ),
    "broken anchor": (
        _append("guide.md", "\nSee [workers](delivery-modes.md#no-such-heading).\n"),
        "no-such-heading",
    ),
    "missing API object": (
        _append("reference/app.md", "\n::: chicory.NoSuchThing\n"),
        "chicory.NoSuchThing",
    ),
    "broken cross-reference": (
        _append("guide.md", "\nSee [the app][chicory.NoSuchApp].\n"),
        "chicory.NoSuchApp",
    ),
    "page missing from the nav": (_orphan, "orphan.md"),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_the_strict_build_refuses_a_broken_page(defect: str, tmp_path: Path) -> None:
    inject, named = DEFECTS[defect]
    project = make_project(tmp_path)
    inject(project / "docs")
    done = build(project, tmp_path / "site")
    assert done.returncode != 0, f"a {defect} did not fail the strict build"
    assert named in done.stderr, f"the build failed without naming {named!r}:\n{done.stderr}"


def test_the_cli_reference_names_an_option_without_help() -> None:
    sys.path.insert(0, str(ROOT / "tools" / "site"))
    try:
        from hooks import cli_reference  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(ROOT / "tools" / "site"))
    parser = argparse.ArgumentParser(prog="chicory")
    sub = parser.add_subparsers(dest="command")
    worker = sub.add_parser("worker", help="run a worker")
    worker.add_argument("--prefetch", type=int, default=3, help="held beyond running ones")
    worker.add_argument("--undocumented", type=int)
    text, problems = cli_reference(parser)
    assert "`--prefetch` `PREFETCH` | `3` | held beyond running ones" in text
    assert problems == ["chicory worker: --undocumented has no help text"]


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    """The built site over HTTP on a free loopback port (search runs in a web worker)."""
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_navigation_and_search_work_in_a_browser(served: str, tmp_path: Path) -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            "Chromium and chromedriver are needed: apt-get install chromium chromium-driver "
            "(./scripts/check installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as seen
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,900",
        f"--user-data-dir={tmp_path / 'profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        wait = WebDriverWait(driver, 15)
        driver.get(served)
        assert "Chicory" in driver.title
        # Navigation: the left-hand menu leads to a guide and to the API reference.
        for label, path, heading in (
            ("Getting started", "getting-started/", "Getting started"),
            ("Deployment", "deployment/", "Deploying Chicory"),
            ("Tasks", "reference/tasks/", "Tasks"),
        ):
            link = driver.find_element(By.XPATH, f"//nav//a[normalize-space()='{label}']")
            driver.execute_script("arguments[0].click();", link)
            wait.until(seen.url_to_be(served + path))
            assert driver.find_element(By.TAG_NAME, "h1").text == heading
        # Search: a term that only the deployment and Redis guides use.
        box = wait.until(seen.element_to_be_clickable((By.CSS_SELECTOR, "input.md-search__input")))
        box.click()
        box.send_keys("noeviction")
        result = wait.until(
            seen.visibility_of_element_located((By.CSS_SELECTOR, "li.md-search-result__item a"))
        )
        target = result.get_attribute("href") or ""
        assert "deployment/" in target or "redis/" in target, target
        driver.execute_script("arguments[0].click();", result)
        wait.until(lambda d: "noeviction" in d.find_element(By.TAG_NAME, "article").text)
    finally:
        driver.quit()
