"""The async API across event loops: successive ``asyncio.run()`` calls, and a loop still running.

An app's connections belong to the event loop that made them (see ``chicory.loops``). These
tests use a real Redis, where that matters (a socket belongs to one loop's selector), with a
``client_name`` of their own so the server can count their connections.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import uuid
from collections.abc import Iterator

import pytest
import redis

from chicory import AsyncResult, Chicory
from chicory.errors import EventLoopMismatchError
from processes import delete_keys


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"t-loops-{uuid.uuid4().hex[:8]}"
    yield name
    delete_keys(name)


def redis_app(prefix: str) -> Chicory:
    url = f"redis://127.0.0.1:6379/0?key_prefix={prefix}&client_name={prefix}"
    app = Chicory(url, load_entry_points=True)

    @app.task(name="loops.add")
    async def add(x: int, y: int) -> int:
        return x + y

    return app


def connections(name: str) -> int:
    """How many connections named ``name`` the server has right now."""
    client = redis.Redis(port=6379)
    try:
        return sum(1 for entry in client.client_list() if entry.get("name") == name)
    finally:
        client.close()


@pytest.mark.filterwarnings("error::ResourceWarning")
def test_successive_asyncio_runs_each_work_and_leave_no_connection(prefix: str) -> None:
    """Each ``asyncio.run()`` connects on its own loop and closes at that loop's end."""
    app = redis_app(prefix)
    add = app.tasks["loops.add"]
    for i in range(20):
        result = asyncio.run(add.delay(i, 1))
        assert result.id
        assert connections(prefix) == 0, f"run {i} left connections open"

    async def ready() -> int:
        return (await (await app.connected_broker()).counts("default")).ready

    assert asyncio.run(ready()) == 20


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_a_loop_closed_without_shutting_down_is_replaced(prefix: str) -> None:
    """A loop closed by hand (no ``shutdown_asyncgens``) cannot close its sockets any more;
    the next loop drops them (the garbage collector closes them) and works."""
    app = redis_app(prefix)
    add = app.tasks["loops.add"]
    loop = asyncio.new_event_loop()
    loop.run_until_complete(add.delay(1, 1))
    loop.close()
    for _ in range(3):
        asyncio.run(add.delay(2, 2))
    gc.collect()
    assert connections(prefix) == 0


def test_a_loop_still_running_elsewhere_is_a_clear_error(prefix: str) -> None:
    """The app is connected on a loop that runs in another thread: calling it from a second
    loop raises ``EventLoopMismatchError`` saying what to do, and changes nothing there."""
    app = redis_app(prefix)
    add = app.tasks["loops.add"]
    connected, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    async def hold() -> None:
        await add.delay(1, 1)
        connected.set()
        await asyncio.to_thread(release.wait, 10)
        await add.delay(3, 3)  # still works on its own loop afterwards

    def run() -> None:
        try:
            asyncio.run(hold())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert connected.wait(10)
        with pytest.raises(EventLoopMismatchError, match=r"task\.blocking"):
            asyncio.run(add.delay(2, 2))
    finally:
        release.set()
        thread.join(10)
    assert not errors
    asyncio.run(add.delay(4, 4))  # that loop ended: this one takes over

    async def ready() -> int:
        return (await (await app.connected_broker()).counts("default")).ready

    assert asyncio.run(ready()) == 3


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_results_work_after_a_loop_closed_while_a_listener_ran(prefix: str) -> None:
    """The result backend's pub/sub listener was running when its loop was closed by hand;
    the next loop gets a working backend (a fresh listener) all the same."""
    app = redis_app(prefix)
    loop = asyncio.new_event_loop()

    async def wait_for_nothing() -> None:
        with pytest.raises(TimeoutError):
            await AsyncResult(app, "never-stored").get(timeout=0.1)

    loop.run_until_complete(wait_for_nothing())
    loop.close()

    async def store_and_wait() -> bytes | None:
        backend = await app.connected_backend()
        await backend.store("stored", b"record", final=True, ttl=60)
        return await backend.wait("stored", 5)

    assert asyncio.run(store_and_wait()) == b"record"
    gc.collect()  # the first loop's listener is finalized here, quietly (nothing to await)
