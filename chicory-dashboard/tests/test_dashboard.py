"""The dashboard over HTTP (Starlette's test client): pages, safety, mounting, the charts."""

from __future__ import annotations

import re

import anyio
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount
from starlette.testclient import TestClient

from chicory import Chicory, RetryPolicy, Worker
from chicory.admin import Admin, WorkerStatus
from chicory.clock import utcnow
from chicory_dashboard import create_dashboard
from chicory_dashboard.charts import Sampler, chart

HX = {"HX-Request": "true"}


def failing_app() -> Chicory:
    app = Chicory("memory://", retry_policy=RetryPolicy(max_retries=0))

    @app.task(name="ops.sync", queue="sync")
    async def sync(sku: str) -> None:
        raise ConnectionError(f"warehouse down for {sku}")

    @app.task(name="ops.ok")
    async def ok(n: int) -> int:
        return n

    return app


@pytest.fixture
def app() -> Chicory:
    """An app whose three ``ops.sync`` tasks failed for good."""
    chicory = failing_app()

    async def prepare() -> None:
        async with chicory:
            worker = Worker(chicory, queues=["sync", "default"])
            async with anyio.create_task_group() as group:
                group.start_soon(worker.serve)
                for n in range(3):
                    await chicory.tasks["ops.sync"].delay(f"SKU-{n}")
                with anyio.fail_after(10):
                    while sum(q.dead for q in await Admin(chicory).queues()) < 3:  # noqa: ASYNC110
                        await anyio.sleep(0.01)
                worker.stop()

    anyio.run(prepare)
    return chicory


def test_every_page_renders(app: Chicory) -> None:
    client = TestClient(create_dashboard(app))
    overview = client.get("/")
    assert overview.status_code == 200
    assert re.search(r'id="total-dead">3<', overview.text)
    assert "htmx-2.0.11.min.js" in overview.text
    for path in ("/queues", "/workers", "/dead", "/tasks", "/fragments/overview"):
        assert client.get(path).status_code == 200, path
    dead = client.get("/dead").text
    assert dead.count("ops.sync") >= 3
    assert "ConnectionError: warehouse down for SKU-" in dead
    letter = re.search(r'href="(http://testserver/dead/sync/[^"]+)"', dead)
    assert letter is not None
    page = client.get(letter.group(1)).text
    assert "Traceback (most recent call last)" in page
    assert "raise ConnectionError(f&#34;warehouse down for {sku}&#34;)" in page  # escaped
    task_id = re.search(r"/tasks/([0-9a-f]{32})", dead)
    assert task_id is not None
    task = client.get(f"/tasks/{task_id.group(1)}").text
    assert 'id="task-state">FAILURE<' in task
    assert "/dead/sync/" in task, "the task page links its dead letter"
    assert client.get("/tasks?id=nope", follow_redirects=True).text.count("PENDING") >= 1
    assert client.get("/static/htmx-2.0.11.min.js").status_code == 200


def test_read_only_by_default(app: Chicory) -> None:
    client = TestClient(create_dashboard(app))
    dead = client.get("/dead").text
    assert "hx-post" not in dead, "no action buttons on a read-only dashboard"
    letter_id = re.search(r'data-letter="([^"]+)"', dead)
    assert letter_id is not None
    answer = client.post(f"/dead/sync/{letter_id.group(1)}/replay", headers=HX)
    assert answer.status_code == 403
    assert client.post("/dead/replay?task=ops.sync", headers=HX).status_code == 403


def test_actions_need_the_htmx_header_and_do_what_they_say(app: Chicory) -> None:
    client = TestClient(create_dashboard(app, allow_actions=True))
    dead = client.get("/dead").text
    assert 'hx-confirm="Replay dead letter' in dead, "replays are confirmed first"
    assert 'hx-confirm="Delete dead letter' in dead
    first, second, third = re.findall(r'data-letter="([^"]+)"', dead)
    assert client.post(f"/dead/sync/{first}/delete").status_code == 403, "a plain form post"
    assert client.get(f"/dead/sync/{first}/delete").status_code == 405
    deleted = client.post(f"/dead/sync/{first}/delete?in=row", headers=HX)
    assert deleted.status_code == 200
    assert f"deleted {first}" in deleted.text
    assert "<td" in deleted.text
    again = client.post(f"/dead/sync/{first}/delete", headers=HX)
    assert "was gone already" in again.text
    replayed = client.post(f"/dead/sync/{second}/replay", headers=HX)
    assert re.search(r"replayed .* as task .*[0-9a-f]{32}", replayed.text)
    filtered = client.get("/dead?queue=sync&task=ops.*").text
    assert 'hx-post="http://testserver/dead/replay?queue=sync&amp;task=ops.%2A"' in filtered
    bulk = client.post("/dead/replay?queue=sync&task=ops.%2A", headers=HX)
    assert "replayed 1 of 1 dead letter(s)" in bulk.text
    assert third in bulk.text or re.search(r'id="total-dead">0<', client.get("/").text)


def test_the_auth_hook_is_asked_for_every_request(app: Chicory) -> None:
    asked: list[tuple[str, str]] = []

    async def authorize(request: Request, action: str) -> bool:
        asked.append((request.url.path, action))
        return request.headers.get("x-staff") == "yes" and action != "delete"

    client = TestClient(create_dashboard(app, allow_actions=True, authorize=authorize))
    assert client.get("/queues").status_code == 403
    staff = {"x-staff": "yes"}
    assert client.get("/queues", headers=staff).status_code == 200
    letter_id = re.search(r'data-letter="([^"]+)"', client.get("/dead", headers=staff).text)
    assert letter_id is not None
    path = f"/dead/sync/{letter_id.group(1)}"
    assert client.post(f"{path}/delete", headers={**staff, **HX}).status_code == 403
    assert client.post(f"{path}/replay", headers={**staff, **HX}).status_code == 200
    assert ("/queues", "view") in asked
    assert (f"{path}/delete", "delete") in asked
    assert (f"{path}/replay", "replay") in asked


def test_mounted_in_another_service(app: Chicory) -> None:
    service = Starlette(routes=[Mount("/ops/chicory", create_dashboard(app))])
    client = TestClient(service)
    page = client.get("/ops/chicory/dead")
    assert page.status_code == 200
    assert "http://testserver/ops/chicory/static/dashboard.css" in page.text
    assert re.search(r'href="http://testserver/ops/chicory/dead/sync/[^"]+"', page.text)
    assert client.get("/ops/chicory/fragments/queues").status_code == 200


def test_bad_filters_say_what_to_type(app: Chicory) -> None:
    client = TestClient(create_dashboard(app))
    page = client.get("/dead?since=last+tuesday")
    assert page.status_code == 200
    assert "is not a time" in page.text
    assert "ops.sync" not in page.text.split("is not a time")[1]


def test_pages_of_dead_letters_follow_the_cursor(app: Chicory) -> None:
    client = TestClient(create_dashboard(app, page_size=2))
    first = client.get("/dead?order=oldest").text
    shown = re.findall(r'data-letter="([^"]+)"', first)
    assert len(shown) == 2
    next_page = re.search(r'id="next-page" href="([^"]+)"', first)
    assert next_page is not None
    second = client.get(next_page.group(1).replace("&amp;", "&")).text
    rest = re.findall(r'data-letter="([^"]+)"', second)
    assert len(rest) == 1
    assert set(shown).isdisjoint(rest)
    assert 'id="next-page"' not in second


def _status(worker_id: str, processed: int, failed: int) -> WorkerStatus:
    now = utcnow()
    return WorkerStatus(
        worker_id=worker_id,
        hostname="h",
        pid=1,
        queues=["q"],
        concurrency=1,
        active=0,
        processed=processed,
        failed=failed,
        retried=0,
        started_at=now,
        last_seen=now,
        age=0.0,
        heartbeat_interval=2.0,
    )


def test_charts_turn_heartbeat_totals_into_rates() -> None:
    sampler = Sampler(interval=2.0)
    sampler.record([_status("a", 100, 1)], now=1000.0)
    assert not sampler.samples, "one reading is no rate yet"
    sampler.record([_status("a", 140, 3), _status("b", 7, 0)], now=1002.0)
    sampler.record([_status("b", 17, 0)], now=1004.0)  # a stopped: no negative rate
    sampler.record([_status("a", 5, 0), _status("b", 27, 2)], now=1006.0)  # a restarted
    rates = [(s.processed, s.failed) for s in sampler.samples]
    assert rates == [(20.0, 1.0), (5.0, 0.0), (5.0, 1.0)]
    drawn = chart([s.processed for s in sampler.samples])
    assert drawn.peak == 20.0
    assert drawn.last == 5.0
    assert len(drawn.points.split()) == 3


def _ids_of_two_delayed_tasks(app: Chicory) -> list[str]:
    async def send() -> list[str]:
        async with app:
            ok = app.tasks["ops.ok"]
            return [(await ok.apply_async(args=(n,), countdown=3600)).id for n in (1, 2)]

    return anyio.run(send)


def test_delayed_tasks_are_listed_removed_and_cancelled(app: Chicory) -> None:
    first, second = _ids_of_two_delayed_tasks(app)
    client = TestClient(create_dashboard(app, allow_actions=True))
    page = client.get("/delayed").text
    assert "default (2 delayed)" in page, "the queue holding delayed tasks is chosen"
    assert first in page
    assert second in page
    assert page.count('hx-confirm="Remove delayed task') == 2
    messages = re.findall(r'data-message="([^"]+)"', page)
    removed = client.post(f"/delayed/default/{messages[0]}/remove", headers=HX)
    assert f"removed {messages[0]}: it will not run" in removed.text
    again = client.post(f"/delayed/default/{messages[0]}/remove", headers=HX)
    assert "was gone already" in again.text
    left = client.get("/delayed?queue=default").text
    assert len(re.findall(r'data-message="([^"]+)"', left)) == 1
    (remaining,) = (task_id for task_id in (first, second) if task_id in left)

    task_page = client.get(f"/tasks/{remaining}").text
    assert 'hx-confirm="Cancel task' in task_page
    cancelled = client.post(f"/tasks/{remaining}/cancel", headers=HX)
    assert "cancel requested; removed from the delayed tasks of default/" in cancelled.text
    assert ">CANCELLED<" in cancelled.text
    assert "no delayed tasks in default" in client.get("/delayed?queue=default").text
    final = client.get(f"/tasks/{remaining}").text
    assert 'id="task-state">CANCELLED<' in final
    assert "Cancel task" not in final, "a final task offers no cancel"


def test_cancel_and_remove_are_actions(app: Chicory) -> None:
    (task_id, _) = _ids_of_two_delayed_tasks(app)
    read_only = TestClient(create_dashboard(app))
    page = read_only.get("/delayed").text
    assert task_id in page
    assert "hx-post" not in page
    assert "Cancel task" not in read_only.get(f"/tasks/{task_id}").text
    assert read_only.post(f"/tasks/{task_id}/cancel", headers=HX).status_code == 403
    message = re.search(r'data-message="([^"]+)"', page)
    assert message is not None
    assert (
        read_only.post(f"/delayed/default/{message.group(1)}/remove", headers=HX).status_code == 403
    )

    asked: list[str] = []

    def no_cancelling(request: Request, action: str) -> bool:
        asked.append(action)
        return action not in ("cancel", "remove")

    guarded = TestClient(create_dashboard(app, allow_actions=True, authorize=no_cancelling))
    assert guarded.post(f"/tasks/{task_id}/cancel", headers=HX).status_code == 403
    path = f"/delayed/default/{message.group(1)}/remove"
    assert guarded.post(path, headers=HX).status_code == 403
    assert asked == ["cancel", "remove"]
    assert task_id in guarded.get("/delayed").text, "nothing was removed"
