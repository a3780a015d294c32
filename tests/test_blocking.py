"""The blocking API on Redis: from threads, after ``fork()``, many calls on few connections."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
import redis

from callers_app import add_task, build
from chicory import Chicory, Worker, blocking
from chicory.errors import BlockingCallError, TaskCancelledError, TaskFailedError
from chicory.records import TaskState
from processes import WorkerProcess, delete_keys, wait_for_child, worker_process

SLOW_CALLBACK = re.compile(r"Executing <.*> took \d+\.\d+ seconds$")


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"t-blocking-{uuid.uuid4().hex[:8]}"
    yield name
    delete_keys(name)


def url_of(prefix: str, client: str = "") -> str:
    """The test's Redis URL; connections are named after the prefix (and ``client``)."""
    return f"redis://127.0.0.1:6379/0?key_prefix={prefix}&client_name={prefix}{client}"


@pytest.fixture
def worker(prefix: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    with worker_process(
        url_of(prefix, "-worker"), tmp_path / "runs", app="callers_app:app"
    ) as process:
        yield process


@pytest.fixture
def app(prefix: str) -> Iterator[Chicory]:
    app = build(url_of(prefix))
    yield app
    blocking.close(app)


def connections(name: str) -> int:
    client = redis.Redis(port=6379)
    try:
        return sum(1 for entry in client.client_list() if entry.get("name") == name)
    finally:
        client.close()


def test_calls_from_many_threads_share_the_portal(app: Chicory, worker: WorkerProcess) -> None:
    add = add_task(app)
    failures: list[BaseException] = []

    def caller(base: int) -> None:
        try:
            for i in range(25):
                assert add.blocking.delay(base, i).get(timeout=30) == base + i
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=caller, args=(100 * n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    portal = blocking.portal_thread()
    assert portal is not None
    assert portal.is_alive()
    assert portal is not threading.current_thread()


def test_a_thousand_calls_on_a_bounded_number_of_connections(
    app: Chicory, worker: WorkerProcess, prefix: str
) -> None:
    add = add_task(app)
    peak = 0
    for i in range(1000):
        result = add.blocking.delay(i, 1)
        if i % 10 == 0:
            assert result.get(timeout=30) == i + 1
            peak = max(peak, connections(prefix))
    assert add.blocking.delay(1, 1).get(timeout=30) == 2
    # the broker's pool, the result backend's pool and its pub/sub listener: a handful
    assert 0 < peak <= 4, peak
    blocking.close(app)
    assert connections(prefix) == 0


def test_results_and_states_through_the_blocking_face(app: Chicory, worker: WorkerProcess) -> None:
    add = add_task(app)
    result = add.blocking.apply_async((2, 3), countdown=0.2)
    assert result.state() is TaskState.PENDING
    assert result.get(timeout=30) == 5
    assert result.ready()
    assert not result.failed()
    assert add.blocking.result(result.id).get(timeout=1) == 5
    many = add.blocking.delay_many([(1, 1), (2, 2), {"x": 3, "y": 3}])
    assert [r.get(timeout=30) for r in many] == [2, 4, 6]
    task_id = add.blocking.send(5, 5)
    assert add.blocking.result(task_id).get(timeout=30) == 10
    boom = app.tasks["callers.boom"]
    with pytest.raises(TaskFailedError, match="no luck"):
        boom.blocking.delay("no luck").get(timeout=30)


def test_cancel_and_forget_through_the_blocking_face(app: Chicory, worker: WorkerProcess) -> None:
    add = add_task(app)
    delayed = add.blocking.apply_async((1, 1), countdown=2)
    delayed.cancel()
    with pytest.raises(TaskCancelledError):
        delayed.get(timeout=30)
    assert delayed.state() is TaskState.CANCELLED
    done = add.blocking.delay(2, 2)
    assert done.get(timeout=30) == 4
    assert done.forget()
    assert done.state() is TaskState.PENDING
    assert not done.forget()


def test_a_forked_child_gets_its_own_portal_and_connections(
    app: Chicory, worker: WorkerProcess
) -> None:
    """The parent's portal and connections are in use when it forks; the child makes its
    own, and the parent's keep working (the child touched none of them)."""
    add = add_task(app)
    assert add.blocking.delay(1, 1).get(timeout=30) == 2
    parent_portal = blocking.portal_thread()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            assert blocking.portal_thread() is None
            values = [add.blocking.delay(10, i).get(timeout=30) for i in range(20)]
            new_portal = blocking.portal_thread()
            assert new_portal is not None
            assert new_portal.is_alive()
            code = 0 if values == [10 + i for i in range(20)] else 2
        finally:
            os._exit(code)
    assert wait_for_child(child, 60) == 0
    assert blocking.portal_thread() is parent_portal
    assert [add.blocking.delay(20, i).get(timeout=30) for i in range(20)] == [
        20 + i for i in range(20)
    ]


def test_blocking_inside_an_event_loop_is_refused(app: Chicory) -> None:
    add = add_task(app)

    async def inside() -> None:
        add.blocking.delay(1, 2)

    with pytest.raises(BlockingCallError, match=r"await task\.delay"):
        asyncio.run(inside())


def test_blocking_calls_run_on_the_app_s_loop_when_it_runs_elsewhere(
    app: Chicory, worker: WorkerProcess
) -> None:
    """An app connected on a server's loop (in another thread): blocking calls from other
    threads are handed to that loop, not to the portal."""
    add = add_task(app)
    connected, release = threading.Event(), threading.Event()
    server_thread: list[threading.Thread] = []

    async def serve() -> None:
        await (await add.delay(0, 0)).get(timeout=30)
        server_thread.append(threading.current_thread())
        connected.set()
        await asyncio.to_thread(release.wait, 30)

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    try:
        assert connected.wait(30)

        async def where() -> threading.Thread:
            return threading.current_thread()

        assert blocking.call(app, where) is server_thread[0]
        assert add.blocking.delay(4, 4).get(timeout=30) == 8
    finally:
        release.set()
        thread.join(30)


def test_a_process_using_the_blocking_api_exits_cleanly(prefix: str) -> None:
    """The portal stops at exit and closes its apps: no hang, nothing on stderr (no
    'Task was destroyed', no 'Event loop is closed'), every message sent."""
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from callers_app import add_task, build

app = build({url_of(prefix)!r})
add = add_task(app)
for i in range(50):
    add.blocking.send(i, i)
print("sent")
"""
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "sent"
    # -X dev also logs every callback slower than 0.1 s, which a busy machine produces.
    problems = [line for line in done.stderr.splitlines() if not SLOW_CALLBACK.match(line)]
    assert problems == [], done.stderr
    assert connections(prefix) == 0

    async def ready() -> int:
        app = build(url_of(prefix))
        try:
            return (await (await app.connected_broker()).counts("default")).ready
        finally:
            await app.close()

    assert asyncio.run(ready()) == 50


def test_a_sync_task_enqueues_and_waits_through_the_blocking_face(prefix: str) -> None:
    """A plain ``def`` task runs in a thread of its own while the worker's loop runs in the
    worker's thread: its blocking calls are handed to that loop and share its connections."""
    app = Chicory(url_of(prefix))

    @app.task(name="shop.price")
    async def price(sku: str) -> int:
        return len(sku) * 100

    @app.task(name="shop.invoice")
    def invoice(skus: list[str]) -> int:
        handles = [price.blocking.delay(sku) for sku in skus]
        return sum(handle.get(timeout=10) for handle in handles)

    async def main() -> int:
        worker = Worker(app, concurrency=4)
        async with anyio.create_task_group() as group:
            group.start_soon(worker.serve)
            total = await (await invoice.delay(["ab", "cde"])).get(timeout=20)
            worker.stop()
        await app.close()
        return int(total)

    assert anyio.run(main) == 500
