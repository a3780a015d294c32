"""The schedules page and live task progress in a real headless browser (Debian's Chromium,
driven through Selenium), on memory:// and on Redis.

One process serves the dashboard with a worker running in the same application's lifespan;
the dashboard and a scheduler read one :class:`~chicory.clock.ManualClock`, so the next
fires on the page are known exactly. From the schedules page the test fires the nightly
report by hand (confirming the dialog), follows the link to its task and watches the page
show each progress report as the task makes it, without a reload, until it succeeds.
Screenshots go where ``tests/test_dashboard_browser.py`` keeps its own.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import TypeVar

import anyio
import pytest
import uvicorn
from schedule_reports import Gates, scheduled_app
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from starlette.applications import Starlette
from starlette.routing import Mount
from test_dashboard_browser import answers, browser, screenshot, wait_for, wait_until

from chicory import Chicory, Worker
from chicory.clock import ManualClock
from chicory.scheduling import Scheduler
from chicory_dashboard import create_dashboard
from processes import delete_keys, free_port

__all__ = ["browser"]  # the fixture, shared with the other browser tests

NOW = datetime(2026, 12, 6, 10, 23, tzinfo=UTC)
T = TypeVar("T")


@pytest.fixture(params=["memory", "redis"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "memory":
        yield "memory://"
        return
    prefix = f"chicory-test-{uuid.uuid4().hex[:8]}"
    try:
        yield f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    finally:
        delete_keys(prefix)


@contextlib.contextmanager
def served_with_worker(app: Chicory, clock: ManualClock) -> Iterator[str]:
    """The dashboard of ``app`` (actions on, half-second refresh) and a worker, in one
    uvicorn server of this process; yields its base URL."""
    dashboard = create_dashboard(app, allow_actions=True, clock=clock, refresh=0.5)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        worker = Worker(app, concurrency=4)
        async with anyio.create_task_group() as group:
            group.start_soon(worker.serve)
            try:
                yield
            finally:
                worker.stop()
        await app.close()

    service = Starlette(routes=[Mount("/", dashboard)], lifespan=lifespan)
    port = free_port()
    config = uvicorn.Config(service, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers(base + "/schedules"))
        yield base
    finally:
        server.should_exit = True
        thread.join(30)


def settled(read: Callable[[], T]) -> T:
    """``read()``, again if htmx swapped the element out while it was read (the live parts
    of these pages refresh every half second)."""
    for _ in range(100):
        try:
            return read()
        except StaleElementReferenceException:
            time.sleep(0.05)
    return read()


def row_cell(driver: WebDriver, schedule: str, css: str) -> str:
    selector = f'tr[data-schedule="{schedule}"] td.{css}'
    return settled(lambda: " ".join(driver.find_element(By.CSS_SELECTOR, selector).text.split()))


def text_of(driver: WebDriver, element_id: str) -> str:
    return settled(lambda: str(driver.find_element(By.ID, element_id).text))


def test_schedules_and_the_progress_of_a_run_fired_by_hand(url: str, browser: WebDriver) -> None:
    gates = Gates()
    app = scheduled_app(gates, url)
    clock = ManualClock(NOW.timestamp())

    async def fire_the_interval() -> None:
        async with app:
            scheduler = Scheduler(app, clock=clock)
            await scheduler.tick()  # starts from now: nothing due
            clock.advance(120)  # 10:25, a multiple of five minutes
            (fired,) = await scheduler.tick()
            assert fired.task_id == "tick@2026-12-06T10:25:00Z"

    anyio.run(fire_the_interval)
    name = url.split(":")[0]
    try:
        with served_with_worker(app, clock) as base:
            browser.get(base + "/schedules")
            assert row_cell(browser, "nightly", "next-fire") == (
                "2026-12-07 01:30:00 UTC 2026-12-07 02:30:00 CET in 15h05m"
            )
            assert row_cell(browser, "tick", "next-fire") == "2026-12-06 10:30:00 UTC in 5m00s"
            assert row_cell(browser, "nightly", "last-fire") == "never"
            wait_for(
                browser,
                lambda d: (
                    row_cell(d, "tick", "last-fire")
                    == "2026-12-06 10:25:00 UTC tick@2026-12-06T10:25:00Z SUCCESS"
                ),
            )  # the worker ran it; the table refreshed itself
            text = text_of(browser, "schedule-table")
            assert "cron 30 2 * * *" in text
            assert "every 5m00s" in text
            screenshot(browser, f"schedules-{name}")

            settled(
                lambda: browser.find_element(
                    By.CSS_SELECTOR, 'tr[data-schedule="nightly"] button'
                ).click()
            )
            alert = wait_for(browser, lambda d: d.switch_to.alert)
            assert "Fire schedule nightly now?" in alert.text
            alert.accept()
            wait_for(browser, lambda d: d.find_element(By.CSS_SELECTOR, "#fired a"))
            settled(lambda: browser.find_element(By.CSS_SELECTOR, "#fired a").click())

            def progress(driver: WebDriver) -> str:
                return text_of(driver, "task-progress")

            wait_for(browser, lambda d: progress(d).startswith("25%"))
            assert '{"step":"collect"}' in progress(browser)
            assert text_of(browser, "task-state") == "STARTED"
            screenshot(browser, f"task-progress-{name}")
            page = browser.current_url
            gates.halfway.set()
            wait_for(browser, lambda d: progress(d).startswith("75%"))
            assert browser.current_url == page, "the page updated itself"
            gates.done.set()
            wait_for(browser, lambda d: text_of(d, "task-state") == "SUCCESS")
            assert browser.find_element(By.ID, "task-result").text == '"daily built"'
            assert not browser.find_elements(By.ID, "task-progress")
            live = browser.find_element(By.ID, "task-live")
            assert live.get_attribute("hx-get") is None, "a final task's page stops polling"
    finally:
        gates.halfway.set()
        gates.done.set()
