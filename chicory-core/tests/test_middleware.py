"""Middleware (chicory.middleware): the publish side, the execute chain and the worker's
lifecycle, on memory:// with the real worker."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from chicory import Chicory, RetryPolicy, TaskContext, TaskFailedError, Worker
from chicory.blocking import close
from chicory.errors import InvalidHeaderError, UnknownMiddlewareError
from chicory.headers import user_headers
from chicory.middleware import CallNext, Middleware, OutgoingTask
from chicory.plugins import TaskEvent, hookimpl


@asynccontextmanager
async def serving(app: Chicory, **options: Any) -> AsyncIterator[Worker]:
    worker = Worker(app, heartbeat_interval=0, fetch_timeout=0.05, **options)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.serve)
        await worker.wait_started()
        try:
            yield worker
        finally:
            worker.stop()


class Trace(Middleware):
    """Records what it sees, in a list shared with other middleware."""

    def __init__(self, name: str, seen: list[Any]) -> None:
        self.name, self.seen = name, seen

    def before_publish(self, message: OutgoingTask) -> None:
        self.seen.append((self.name, "publish", message.task))
        message.headers[f"x-{self.name}"] = "1"

    async def execute(self, ctx: TaskContext, call_next: CallNext) -> Any:
        self.seen.append((self.name, "before", ctx.task_name, ctx.attempt))
        try:
            value = await call_next(ctx)
        except Exception as exc:
            self.seen.append((self.name, "error", exc, ctx.will_retry(exc)))
            raise
        self.seen.append((self.name, "after", value))
        return value


async def test_execute_middleware_wraps_runs_in_order_and_sees_the_live_exception() -> None:
    seen: list[Any] = []
    app = Chicory(
        broker="memory://",
        backend="memory://",
        middleware=[Trace("outer", seen), Trace("inner", seen)],
        retry_policy=RetryPolicy(max_retries=1, delay=0),
    )
    raised: list[BaseException] = []

    @app.task(name="mw.flaky")
    async def flaky(x: int) -> int:  # takes no context: middleware still gets one
        if len(raised) < 2:
            raised.append(ValueError(f"boom {len(raised)}"))
            raise raised[-1]
        return x * 2

    async with serving(app):
        first = await flaky.delay(1)
        with pytest.raises(TaskFailedError, match="boom 1"):
            await first.get(timeout=10)
        assert await (await flaky.delay(21)).get(timeout=10) == 42
    await app.close()

    publish = [s for s in seen if s[1] == "publish"]
    assert publish == [("outer", "publish", "mw.flaky"), ("inner", "publish", "mw.flaky")] * 2
    runs = [s for s in seen if s[1] != "publish"]
    # First attempt raises (will be retried), the retry raises for good, then a success.
    assert runs[:4] == [
        ("outer", "before", "mw.flaky", 1),
        ("inner", "before", "mw.flaky", 1),
        ("inner", "error", raised[0], True),
        ("outer", "error", raised[0], True),
    ]
    assert runs[4:8] == [
        ("outer", "before", "mw.flaky", 2),
        ("inner", "before", "mw.flaky", 2),
        ("inner", "error", raised[1], False),
        ("outer", "error", raised[1], False),
    ]
    assert runs[8:] == [
        ("outer", "before", "mw.flaky", 1),
        ("inner", "before", "mw.flaky", 1),
        ("inner", "after", 42),
        ("outer", "after", 42),
    ]


async def test_publish_middleware_headers_reach_the_task_and_retries() -> None:
    seen: list[Any] = []
    app = Chicory(broker="memory://", backend="memory://", middleware=[Trace("a", seen)])
    headers_seen: list[dict[str, str]] = []

    @app.task(name="mw.headers", retry_policy=RetryPolicy(max_retries=1, delay=0))
    async def read(ctx: TaskContext) -> int:
        headers_seen.append(user_headers(ctx.headers))
        if ctx.attempt == 1:
            ctx.retry()
        return ctx.attempt

    async with serving(app):
        assert await (await read.apply_async(headers={"tenant": "acme"})).get(timeout=10) == 2
    await app.close()
    assert headers_seen == [{"tenant": "acme", "x-a": "1"}] * 2


class Refuse(Middleware):
    def before_publish(self, message: OutgoingTask) -> None:
        if message.args == [13]:
            raise PermissionError("13 is refused")


async def test_a_refused_message_raises_in_the_caller_and_nothing_is_sent() -> None:
    app = Chicory(broker="memory://", backend="memory://", middleware=[Refuse()])

    @app.task(name="mw.refused")
    async def task(n: int) -> int:
        return n

    with pytest.raises(PermissionError, match="13 is refused"):
        await task.delay(13)
    with pytest.raises(PermissionError):
        await task.delay_many([(1,), (13,), (2,)])
    broker = await app.connected_broker()
    assert (await broker.counts("default")).ready == 0
    await task.delay_many([(1,), (2,)])
    assert (await broker.counts("default")).ready == 2
    await app.close()


class ReservedHeader(Middleware):
    def before_publish(self, message: OutgoingTask) -> None:
        message.headers["chicory-sig"] = "forged"


async def test_middleware_cannot_set_reserved_headers() -> None:
    app = Chicory(broker="memory://", backend="memory://", middleware=[ReservedHeader()])

    @app.task(name="mw.reserved")
    async def task() -> None:
        return None

    with pytest.raises(InvalidHeaderError, match="reserved"):
        await task.delay()
    await app.close()


class Swallow(Middleware):
    async def execute(self, ctx: TaskContext, call_next: CallNext) -> Any:
        try:
            return await call_next(ctx)
        except KeyError:
            return "recovered"


async def test_what_execute_returns_is_the_result() -> None:
    app = Chicory(broker="memory://", backend="memory://", middleware=[Swallow()])

    @app.task(name="mw.swallowed", retry_policy=RetryPolicy.never())
    async def task() -> str:
        raise KeyError("missing")

    async with serving(app):
        assert await (await task.delay()).get(timeout=10) == "recovered"
    await app.close()


class Pool(Middleware):
    def __init__(self, name: str, events: list[str], fail: bool = False) -> None:
        self.name, self.events, self.fail = name, events, fail

    async def on_worker_start(self, worker: Worker) -> None:
        self.events.append(f"start {self.name}")
        if self.fail:
            raise ConnectionError(f"{self.name} cannot connect")
        worker.resources[self.name] = f"pool of {self.name}"

    async def on_worker_stop(self, worker: Worker) -> None:
        self.events.append(f"stop {self.name} after {worker.processed}")


async def test_lifecycle_hooks_build_resources_that_tasks_see() -> None:
    events: list[str] = []
    pools = [Pool("db", events), Pool("http", events)]
    app = Chicory(broker="memory://", backend="memory://", middleware=pools)

    @app.task(name="mw.uses")
    async def uses(ctx: TaskContext) -> list[str]:
        return [ctx.resources["db"], ctx.resources["http"]]

    async with serving(app):
        assert await (await uses.delay()).get(timeout=10) == ["pool of db", "pool of http"]
    await app.close()
    assert events == ["start db", "start http", "stop http after 1", "stop db after 1"]


async def test_a_failing_start_hook_stops_the_worker_and_closes_what_started() -> None:
    events: list[str] = []
    app = Chicory(
        broker="memory://",
        backend="memory://",
        middleware=[Pool("db", events), Pool("http", events, fail=True), Pool("late", events)],
    )
    worker = Worker(app, heartbeat_interval=0)
    with pytest.raises(ConnectionError, match="http cannot connect"):
        await worker.serve()
    await app.close()
    assert events == ["start db", "start http", "stop db after 0"]


class CountsDeadLetters(Middleware):
    def __init__(self) -> None:
        self.dead: list[str] = []

    @hookimpl
    def chicory_task_dead_lettered(self, event: TaskEvent) -> None:
        self.dead.append(event.task_name)


async def test_a_middleware_may_observe_worker_events() -> None:
    counter = CountsDeadLetters()
    app = Chicory(broker="memory://", backend="memory://", middleware=[counter])

    @app.task(name="mw.doomed", retry_policy=RetryPolicy.never())
    async def doomed() -> None:
        raise RuntimeError("no")

    async with serving(app):
        with pytest.raises(TaskFailedError):
            await (await doomed.delay()).get(timeout=10)
    await app.close()
    assert counter.dead == ["mw.doomed"]


async def test_without_middleware_the_worker_runs_the_plain_path() -> None:
    app = Chicory(broker="memory://", backend="memory://")
    assert app.publish_hooks == ()
    worker = Worker(app)
    assert worker._jobs._chain is None  # the run calls execute(), as with no middleware at all
    only_publish = Chicory(broker="memory://", backend="memory://", middleware=[Refuse()])
    assert Worker(only_publish)._jobs._chain is None
    await app.close()
    await only_publish.close()


def test_an_unknown_middleware_name_lists_what_is_installed() -> None:
    with pytest.raises(UnknownMiddlewareError, match=r"'nope'.*Installed:"):
        Chicory(broker="memory://", backend="memory://", middleware=["nope"])


async def test_app_publish_goes_through_the_publish_middleware() -> None:
    seen: list[Any] = []
    app = Chicory(broker="memory://", backend="memory://", middleware=[Trace("p", seen)])
    headers_seen: list[dict[str, str]] = []

    @app.task(name="mw.built")
    async def built(ctx: TaskContext, n: int) -> int:
        headers_seen.append(user_headers(ctx.headers))
        return n

    async with serving(app) as worker:
        await app.publish([built.message([1]), built.message([2], queue="default")])
        while worker.processed < 2:  # noqa: ASYNC110 - a counter, not an event
            await anyio.sleep(0.01)
    await app.close()
    assert headers_seen == [{"x-p": "1"}] * 2
    assert [s for s in seen if s[1] == "publish"] == [("p", "publish", "mw.built")] * 2


async def test_sync_tasks_and_timeouts_run_through_the_chain() -> None:
    seen: list[Any] = []
    app = Chicory(
        broker="memory://",
        backend="memory://",
        middleware=[Trace("t", seen)],
        retry_policy=RetryPolicy.never(),
    )

    @app.task(name="mw.sync")
    def sync(ctx: TaskContext, n: int) -> list[Any]:
        return [n, ctx.task_name]

    @app.task(name="mw.slow", timeout=0.05)
    async def slow() -> None:
        await anyio.sleep(5)

    async with serving(app):
        assert await (await sync.delay(3)).get(timeout=10) == [3, "mw.sync"]
        with pytest.raises(TaskFailedError, match="TaskTimeoutError"):
            await (await slow.delay()).get(timeout=10)
    await app.close()
    (error,) = [s for s in seen if s[1] == "error"]
    assert type(error[2]).__name__ == "TaskTimeoutError"
    assert error[3] is False


request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")


class StampsRequest(Middleware):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def before_publish(self, message: OutgoingTask) -> None:
        self.seen.append(request_id.get())
        message.headers["x-request-id"] = request_id.get()


def test_publish_middleware_sees_the_callers_context_through_the_blocking_api() -> None:
    """A sync caller's context (a web request's id, its trace span) reaches the publish
    middleware although the message is published on the blocking API's event loop."""
    stamps = StampsRequest()
    app = Chicory(broker="memory://", backend="memory://", middleware=[stamps])

    @app.task(name="mw.from_sync")
    async def from_sync() -> None:
        return None

    seen_in_threads: list[str] = []

    def handle_request(rid: str) -> None:
        request_id.set(rid)
        from_sync.blocking.delay()
        from_sync.blocking.delay_many([(), ()])
        seen_in_threads.append(request_id.get())

    threads = [threading.Thread(target=handle_request, args=(f"req-{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    close(app)
    assert sorted(stamps.seen) == sorted([f"req-{i}" for i in range(3) for _ in range(3)])
    assert sorted(seen_in_threads) == ["req-0", "req-1", "req-2"]


def test_the_callers_context_also_reaches_an_app_served_by_another_threads_loop() -> None:
    """The blocking API publishes on the app's own loop when it runs in another thread (an
    in-process worker, say): the caller's context goes there too."""
    stamps = StampsRequest()
    app = Chicory(broker="memory://", backend="memory://", middleware=[stamps])

    @app.task(name="mw.elsewhere")
    async def elsewhere() -> None:
        return None

    connected, done = threading.Event(), threading.Event()

    async def home() -> None:
        await app.connected_broker()
        connected.set()
        while not done.is_set():  # noqa: ASYNC110 - a thread's flag, not an event of this loop
            await anyio.sleep(0.01)
        await app.close()

    loop_thread = threading.Thread(target=anyio.run, args=(home,))
    loop_thread.start()
    try:
        assert connected.wait(10)
        request_id.set("req-home")
        elsewhere.blocking.delay()
    finally:
        done.set()
        loop_thread.join(10)
    assert stamps.seen == ["req-home"]
