"""The dashboard in a real headless browser (Debian's Chromium, driven through Selenium).

* On Redis, with a ``chicory worker`` process and a ``chicory dashboard`` process: pages load,
  a dead letter is replayed from the UI (confirming the dialog) and its task then succeeds.
* On memory://, served in this process: a dead-letter page over 100,000 dead letters and a
  queue of 100,000 tasks renders in under a second, measured by the browser's navigation
  timing (the suite's one timing check, generous on purpose).

Screenshots of the main pages are kept under ``test-artifacts/dashboard/`` (or
``$CHICORY_TEST_ARTIFACTS/dashboard/``), which git ignores.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import uvicorn
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from chicory import Chicory
from chicory.cli import main
from chicory_dashboard import create_dashboard
from processes import TESTS, delete_keys, free_port, worker_process

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(os.environ.get("CHICORY_TEST_ARTIFACTS", TESTS.parent / "test-artifacts"))


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(
            "the dashboard's browser tests need Debian's chromium and chromium-driver: "
            "apt-get install chromium chromium-driver (scripts/check does)",
            pytrace=False,
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: WebDriver, name: str) -> None:
    folder = ARTIFACTS / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(folder / f"{name}.png"))


def wait_for(driver: WebDriver, check: Callable[[WebDriver], Any], timeout: float = 20) -> Any:
    # htmx replaces the polled elements: one found just before a swap is stale when read.
    return WebDriverWait(
        driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
    ).until(check)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def wait_until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture
def redis_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    prefix = f"chicory-test-{uuid.uuid4().hex[:8]}"
    url = f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    monkeypatch.setenv("CHICORY_BROKER_URL", url)
    monkeypatch.setenv("CHICORY_TEST_OUTAGE", str(tmp_path / "outage"))
    try:
        yield url
    finally:
        delete_keys(prefix)


def cli(monkeypatch: pytest.MonkeyPatch, *argv: str) -> int:
    monkeypatch.delitem(sys.modules, "cli_app", raising=False)
    return main(list(argv))


def test_replay_a_dead_letter_from_the_ui_and_its_task_succeeds(
    redis_env: str,
    tmp_path: Path,
    browser: WebDriver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    outage = tmp_path / "outage"
    outage.write_text("inf")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "dashboard.log").open("wb")
    command = ["dashboard", "cli_app:app", "--port", str(port), "--allow-actions"]
    dashboard = subprocess.Popen(
        [sys.executable, "-m", "chicory.cli", *command],
        cwd=TESTS,
        env={**os.environ, "PYTHONPATH": str(TESTS)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with worker_process(
            redis_env,
            tmp_path / "runs.txt",
            "-q",
            "default",
            "-q",
            "billing",
            "--heartbeat-interval",
            "0.5",
            app="cli_app:app",
        ):
            for n in range(2):
                assert (
                    cli(monkeypatch, "send", "cli_app:app", "shop.charge", "--args", f'["o{n}", 5]')
                    == 0
                )
            assert cli(monkeypatch, "send", "cli_app:app", "shop.email", "--args", '["x@y.z"]') == 0
            capsys.readouterr()
            wait_until(lambda: answers(base + "/queues"))

            browser.get(base + "/")
            wait_for(browser, lambda d: d.find_element(By.ID, "total-dead").text == "3")
            wait_for(browser, lambda d: d.find_element(By.ID, "total-workers").text == "1")
            screenshot(browser, "overview")
            browser.get(base + "/queues")
            assert "billing" in browser.find_element(By.ID, "queue-table").text
            screenshot(browser, "queues")
            browser.get(base + "/workers")
            wait_for(browser, lambda d: "billing" in d.find_element(By.ID, "worker-table").text)
            screenshot(browser, "workers")

            outage.write_text("0")
            browser.get(base + "/dead?task=shop.charge")
            rows = browser.find_elements(By.CSS_SELECTOR, "#dead-table tbody tr")
            assert len(rows) == 2, (tmp_path / "dashboard.log").read_text()[-3000:]
            assert "ConnectionError: payment gateway down" in rows[0].text
            screenshot(browser, "dead-letters")
            rows[0].find_element(By.CSS_SELECTOR, "td a").click()
            assert "Traceback" in browser.find_element(By.CSS_SELECTOR, "pre.traceback").text
            history = browser.find_element(By.CSS_SELECTOR, "table.history").text
            assert history.count("retry") == 2, history
            screenshot(browser, "dead-letter")
            browser.back()
            rows = browser.find_elements(By.CSS_SELECTOR, "#dead-table tbody tr")
            rows[0].find_element(By.CSS_SELECTOR, "button.replay").click()
            alert = wait_for(browser, lambda d: d.switch_to.alert)
            assert "full retry budget" in alert.text
            alert.accept()
            link = wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "a.replayed-task"))
            task_id = link.text
            link.click()

            def succeeded(driver: WebDriver) -> bool:
                driver.get(f"{base}/tasks/{task_id}")
                return bool(driver.find_element(By.ID, "task-state").text == "SUCCESS")

            wait_for(browser, succeeded)
            assert "charged 5" in browser.find_element(By.ID, "task-result").text
            screenshot(browser, "task")
            browser.get(base + "/dead")
            assert len(browser.find_elements(By.CSS_SELECTOR, "#dead-table tbody tr")) == 2
    finally:
        dashboard.terminate()
        try:
            dashboard.wait(10)
        except subprocess.TimeoutExpired:
            dashboard.kill()
            dashboard.wait(10)
        log.close()


BIG = 100_000


def big_app() -> Chicory:
    """memory:// holding 100,000 ready tasks and 100,000 dead letters (more than the broker
    keeps by default: its limit is raised)."""
    app = Chicory("memory://", broker_options={"dead_letter_max_count": BIG})

    @app.task(name="bulk.job", queue="bulk")
    async def job(n: int) -> int:
        return n

    @app.task(name="bulk.doomed", queue="doomed")
    async def doomed(n: int) -> int:
        return n

    async def fill() -> None:
        async with app:
            for start in range(0, BIG, 10_000):
                await job.delay_many((n,) for n in range(start, start + 10_000))
                await doomed.delay_many((n,) for n in range(start, start + 10_000))
            async with app.broker.consume(["doomed"], prefetch=10_000) as consumer:
                for _ in range(BIG // 10_000):
                    for delivery in await consumer.fetch(10_000, timeout=5):
                        await delivery.dead_letter("ValueError: stock count mismatch")

    anyio.run(fill)
    return app


@contextlib.contextmanager
def served(app: Chicory) -> Iterator[str]:
    """The dashboard of ``app`` (actions on), served in this process; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_dashboard(app, allow_actions=True),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers(base + "/queues"))
        yield base
    finally:
        server.should_exit = True
        thread.join(10)


def test_pages_over_100000_tasks_render_in_under_a_second(browser: WebDriver) -> None:
    app = big_app()
    with served(app) as base:
        timings = {}
        for name, path in (
            ("dead-100k", "/dead"),
            ("queues-100k", "/queues"),
            ("overview-100k", "/"),
        ):
            browser.get(base + path)
            timing = browser.execute_script(
                "const t = performance.getEntriesByType('navigation')[0];"
                "return {load: t.loadEventEnd - t.startTime,"
                " response: t.responseEnd - t.startTime};"
            )
            timings[name] = timing
            screenshot(browser, name)
            assert timing["load"] < 1000, f"{path} took {timing['load']:.0f} ms to load: {timings}"
        rows = browser.find_elements(By.CSS_SELECTOR, "#queue-table tbody tr")
        text = "\n".join(row.text for row in rows)
        assert "bulk 100000" in text
        assert "doomed 0 0 0 100000" in text
        browser.get(base + "/dead")
        assert len(browser.find_elements(By.CSS_SELECTOR, "#dead-table tbody tr")) == 50
        assert browser.find_element(By.ID, "next-page")
        print(f"navigation timings over {BIG:,} tasks (ms): {timings}")


def test_remove_a_delayed_task_and_cancel_another_from_the_ui(browser: WebDriver) -> None:
    app = Chicory("memory://")

    @app.task(name="mail.reminder", queue="mail")
    async def reminder(user: str) -> None:
        raise AssertionError("a removed or cancelled reminder must never run")

    async def send() -> list[str]:
        async with app:
            return [
                (await reminder.apply_async(args=(user,), countdown=3600)).id
                for user in ("ann", "bob")
            ]

    ann, bob = anyio.run(send)
    with served(app) as base:
        browser.get(base + "/delayed")
        rows = browser.find_elements(By.CSS_SELECTOR, "#delayed-table tbody tr")
        assert len(rows) == 2
        assert '"ann"' in rows[0].text
        screenshot(browser, "delayed")
        rows[0].find_element(By.CSS_SELECTOR, "button.delete").click()
        alert = wait_for(browser, lambda d: d.switch_to.alert)
        assert "It will not run" in alert.text
        alert.accept()
        wait_for(
            browser, lambda d: "it will not run" in d.find_element(By.ID, "delayed-table").text
        )

        browser.get(f"{base}/tasks/{bob}")
        browser.find_element(By.CSS_SELECTOR, "#cancel button").click()
        wait_for(browser, lambda d: d.switch_to.alert).accept()
        result = wait_for(browser, lambda d: d.find_element(By.ID, "cancel-result"))
        assert "CANCELLED" in result.text
        screenshot(browser, "cancelled")
        browser.get(base + "/delayed?queue=mail")
        assert "no delayed tasks in mail" in browser.find_element(By.ID, "delayed-table").text
        browser.get(f"{base}/tasks/{ann}")
        assert browser.find_element(By.ID, "task-state").text == "PENDING", "removed, not run"
