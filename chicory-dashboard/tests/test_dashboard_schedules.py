"""The schedules page and task progress over HTTP (Starlette's test client), on memory://
and on Redis.

The dashboard and the scheduler read one :class:`~chicory.clock.ManualClock`, so every next
fire is known exactly; a worker runs in the served application's lifespan, so a task can
report progress while the test reads its page.
"""

from __future__ import annotations

import contextlib
import html
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import anyio
import pytest
from schedule_reports import Gates, scheduled_app
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount
from starlette.testclient import TestClient

from chicory import Chicory, Worker
from chicory.clock import ManualClock
from chicory.scheduling import Scheduler
from chicory_dashboard import create_dashboard
from processes import delete_keys

HX = {"HX-Request": "true"}
NOW = datetime(2026, 12, 6, 10, 23, tzinfo=UTC)


@pytest.fixture(params=["memory", "redis"])
def url(request: pytest.FixtureRequest) -> Iterator[str]:
    """memory://, then a Redis key prefix of the test's own (broker and result backend)."""
    if request.param == "memory":
        yield "memory://"
        return
    prefix = f"chicory-test-{uuid.uuid4().hex[:8]}"
    try:
        yield f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    finally:
        delete_keys(prefix)


def with_worker(app: Chicory, *, worker: bool = True, **options: Any) -> Starlette:
    """The dashboard of ``app`` with a worker running in its lifespan (one event loop,
    closing ``app`` at the end); serve it with ``with TestClient(...)``."""
    dashboard = create_dashboard(app, **options)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        running = Worker(app, concurrency=4)
        async with anyio.create_task_group() as group:
            if worker:
                group.start_soon(running.serve)
            yield
            running.stop()
        await app.close()

    return Starlette(routes=[Mount("/", dashboard)], lifespan=lifespan)


def poll(client: TestClient, path: str, check: Callable[[str], bool]) -> str:
    """GET ``path`` until ``check`` accepts the page (30 s at most); return the page."""
    deadline = time.monotonic() + 30
    while True:
        page = client.get(path).text
        if check(page):
            return page
        assert time.monotonic() < deadline, f"timed out on {path}: {page}"
        time.sleep(0.05)


def cell(page: str, schedule: str, css: str) -> str:
    """The text of the ``css`` cell of ``schedule``'s row, tags and spaces dropped."""
    row = re.search(rf'<tr data-schedule="{schedule}">(.*?)</tr>', page, re.S)
    assert row is not None, page
    found = re.search(rf'<td class="[^"]*{css}[^"]*">(.*?)</td>', row.group(1), re.S)
    assert found is not None, row.group(1)
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


def test_the_schedules_page_shows_each_next_fire_by_the_dashboards_clock() -> None:
    app = scheduled_app(Gates())
    clock = ManualClock(NOW.timestamp())
    client = TestClient(create_dashboard(app, clock=clock))
    page = client.get("/schedules").text
    assert 'href="http://testserver/schedules" class="active"' in page
    assert "cron <code>30 2 * * *</code>" in page
    assert "Europe/Paris" in page
    assert "every 5m00s" in page
    # 02:30 in Paris (UTC+1 in December) is 01:30 UTC, the next morning.
    assert cell(page, "nightly", "next-fire") == (
        "2026-12-07 01:30:00 UTC 2026-12-07 02:30:00 CET in 15h07m"
    )
    assert cell(page, "tick", "next-fire") == "2026-12-06 10:25:00 UTC in 2m00s"
    assert cell(page, "nightly", "last-fire") == "never"
    assert "fire the latest once" in page
    assert "hx-post" not in page, "read-only: no Fire now button"

    # The night clocks jump from 02:00 to 03:00 in Paris, 02:30 does not exist: the fire
    # moves forward by the gap, to 03:30 summer time (01:30 UTC).
    clock.advance((datetime(2027, 3, 27, 12, tzinfo=UTC) - NOW).total_seconds())
    fragment = client.get("/fragments/schedules").text
    assert cell(fragment, "nightly", "next-fire").startswith(
        "2027-03-28 01:30:00 UTC 2027-03-28 03:30:00 CEST"
    )


def test_the_last_fire_of_a_schedule_links_its_run_and_shows_its_progress(url: str) -> None:
    gates = Gates()
    app = scheduled_app(gates, url)
    clock = ManualClock(NOW.timestamp())

    async def fire() -> None:
        async with app:
            scheduler = Scheduler(app, clock=clock)
            assert await scheduler.tick() == []  # nothing due yet: it starts from now
            clock.advance(120)  # 10:25, the interval's fire
            (fired,) = await scheduler.tick()
            assert fired.task_id == "tick@2026-12-06T10:25:00Z"
            clock.advance((datetime(2026, 12, 7, 1, 30, tzinfo=UTC) - NOW).total_seconds() - 120)
            fires = {fire.schedule: fire.task_id for fire in await scheduler.tick()}
            assert fires == {
                "nightly": "nightly@2026-12-07T01:30:00Z",
                "tick": "tick@2026-12-07T01:30:00Z",  # a multiple of five minutes too
            }

    anyio.run(fire)
    with TestClient(with_worker(app, worker=False, clock=clock)) as client:
        page = client.get("/schedules").text
    last = cell(page, "nightly", "last-fire")
    assert last == "2026-12-07 01:30:00 UTC nightly@2026-12-07T01:30:00Z PENDING", "queued"
    assert 'href="http://testserver/tasks/nightly@2026-12-07T01:30:00Z"' in page
    assert cell(page, "nightly", "next-fire").startswith("2026-12-08 01:30:00 UTC")

    with TestClient(with_worker(app, clock=clock)) as client:
        page = poll(client, "/fragments/schedules", lambda p: "25%" in cell(p, "nightly", "last"))
        last = cell(page, "nightly", "last-fire")
        assert "STARTED" in last, last
        assert '{"step":"collect"}' in html.unescape(last), last
        gates.halfway.set()
        page = poll(client, "/fragments/schedules", lambda p: "75%" in cell(p, "nightly", "last"))
        gates.done.set()
        page = poll(
            client, "/fragments/schedules", lambda p: "SUCCESS" in cell(p, "nightly", "last")
        )
        assert "%" not in cell(page, "nightly", "last-fire"), "a finished run reports none"
        assert "SUCCESS" in cell(page, "tick", "last-fire")


def test_a_task_page_shows_its_progress_and_polls_until_the_task_is_final(url: str) -> None:
    gates = Gates()
    app = scheduled_app(gates, url)
    with TestClient(with_worker(app, refresh=0.5)) as client:
        sent = client.portal.call(app.tasks["reports.build"].delay, "weekly")  # type: ignore[union-attr]
        path = f"/tasks/{sent.id}"
        page = poll(client, path, lambda p: 'id="task-progress"' in p)
        assert 'id="task-state">STARTED<' in page
        progress = re.search(r'<td id="task-progress">(.*?)</td>', page, re.S)
        assert progress is not None
        assert '<progress max="1" value="0.25">' in progress.group(1)
        assert '{"step":"collect"}' in html.unescape(progress.group(1))
        live = f'hx-get="http://testserver/fragments/tasks/{sent.id}" hx-trigger="every 0.5s"'
        assert live in page, "a running task's page refreshes itself"
        gates.halfway.set()
        fragment = poll(client, f"/fragments{path}", lambda p: 'value="0.75"' in p)
        assert "75%" in fragment, "150 of a total of 200"
        assert 'hx-swap="outerHTML"' in fragment, "still polling"
        gates.done.set()
        final = poll(client, f"/fragments{path}", lambda p: ">SUCCESS<" in p)
        assert "weekly built" in final
        assert "hx-get" not in final, "a final task's fragment stops the polling"
        assert "task-progress" not in final


def test_fire_now_enqueues_one_run_until_it_finishes(url: str) -> None:
    gates = Gates()
    app = scheduled_app(gates, url)
    with TestClient(with_worker(app, allow_actions=True)) as client:
        page = client.get("/schedules").text
        assert 'hx-confirm="Fire schedule nightly now?' in page
        assert client.post("/schedules/nightly/fire").status_code == 403, "a plain form post"
        fired = client.post("/schedules/nightly/fire", headers=HX)
        assert fired.status_code == 200
        found = re.search(
            r'fired nightly now as task <a href="[^"]+/tasks/([0-9a-f]{32})"', fired.text
        )
        assert found is not None, fired.text
        task_id = found.group(1)
        poll(client, f"/tasks/{task_id}", lambda p: 'id="task-progress"' in p)
        again = client.post("/schedules/nightly/fire", headers=HX).text
        assert "not fired again: the run fired by hand earlier" in again
        assert task_id in again
        gates.halfway.set()
        gates.done.set()
        poll(client, f"/tasks/{task_id}", lambda p: ">SUCCESS<" in p and "daily built" in p)
        third = client.post("/schedules/nightly/fire", headers=HX).text
        assert "fired nightly now as task" in third, "the key is free once the run finished"
        assert task_id not in third
        unknown = html.unescape(client.post("/schedules/weekly/fire", headers=HX).text)
        assert "could not fire weekly: the app has no schedule named 'weekly'" in unknown
        assert "never" in cell(client.get("/schedules").text, "nightly", "last-fire"), (
            "a fire by hand is not one of the schedule's fires"
        )


def test_fire_now_is_an_action() -> None:
    app = scheduled_app(Gates())
    read_only = TestClient(create_dashboard(app))
    assert read_only.post("/schedules/tick/fire", headers=HX).status_code == 403
    asked: list[str] = []

    def no_firing(request: Request, action: str) -> bool:
        asked.append(action)
        return action != "fire"

    guarded = TestClient(create_dashboard(app, allow_actions=True, authorize=no_firing))
    assert guarded.get("/schedules").status_code == 200
    assert guarded.post("/schedules/tick/fire", headers=HX).status_code == 403
    assert asked == ["view", "fire"]

    async def ready() -> int:
        async with app:
            return (await app.broker.counts("default")).ready

    assert anyio.run(ready) == 0, "nothing was enqueued"


def test_an_app_without_schedules_says_how_to_add_one() -> None:
    page = TestClient(create_dashboard(Chicory("memory://"))).get("/schedules").text
    assert "the app declares no schedules" in page
    assert "@app.periodic(...)" in page
