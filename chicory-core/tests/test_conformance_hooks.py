"""Observer plugins passed to ``Chicory(..., plugins=[...])`` receive every lifecycle hook."""

from __future__ import annotations

from typing import Any

import anyio

from chicory import Chicory, DeliveryMode, RetryPolicy, TaskContext, TaskFailedError, Worker
from chicory.plugins import TaskEvent, WorkerEvent, hookimpl
from chicory.plugins.host import OBSERVER_HOOKS


class Recorder:
    """An observer implementing every lifecycle hook, as docs/plugins.md shows."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def of(self, hook: str) -> list[Any]:
        return [event for name, event in self.seen if name == hook]

    @hookimpl
    def chicory_task_received(self, event: TaskEvent) -> None:
        self.seen.append(("chicory_task_received", event))

    @hookimpl
    def chicory_task_started(self, event: TaskEvent) -> None:
        self.seen.append(("chicory_task_started", event))

    @hookimpl
    def chicory_task_succeeded(self, event: TaskEvent) -> None:
        self.seen.append(("chicory_task_succeeded", event))

    @hookimpl
    def chicory_task_retried(self, event: TaskEvent) -> None:
        self.seen.append(("chicory_task_retried", event))

    @hookimpl
    def chicory_task_failed(self, event: TaskEvent) -> None:
        self.seen.append(("chicory_task_failed", event))

    @hookimpl
    def chicory_task_dead_lettered(self, event: TaskEvent) -> None:
        self.seen.append(("chicory_task_dead_lettered", event))

    @hookimpl
    def chicory_task_redelivered(self, event: TaskEvent) -> None:
        self.seen.append(("chicory_task_redelivered", event))

    @hookimpl
    def chicory_task_lease_lost(self, event: TaskEvent) -> None:
        self.seen.append(("chicory_task_lease_lost", event))

    @hookimpl
    def chicory_worker_started(self, event: WorkerEvent) -> None:
        self.seen.append(("chicory_worker_started", event))

    @hookimpl
    def chicory_worker_stopping(self, event: WorkerEvent) -> None:
        self.seen.append(("chicory_worker_stopping", event))


class Broken:
    """An observer that raises: it must be logged and skipped, never hurt tasks or others."""

    @hookimpl
    def chicory_task_succeeded(self, event: TaskEvent) -> None:
        raise RuntimeError("observer bug")


async def test_an_observer_receives_every_lifecycle_hook() -> None:
    recorder = Recorder()
    app = Chicory(
        broker="memory://", backend="memory://", plugins=[Broken(), recorder], default_queue="q"
    )

    @app.task(name="hooks.ok", delivery_mode=DeliveryMode.AT_MOST_ONCE)
    async def ok(n: int) -> int:
        return n * 2

    @app.task(name="hooks.flaky", retry_policy=RetryPolicy(max_retries=1, delay=0))
    async def flaky(ctx: TaskContext) -> int:
        if ctx.attempt == 1:
            raise ValueError("first attempt fails")
        return ctx.attempt

    @app.task(name="hooks.doomed", retry_policy=RetryPolicy.never())
    async def doomed() -> None:
        raise KeyError("always")

    # A message another consumer took and handed back arrives redelivered.
    handed_back = await ok.delay(1)
    async with (await app.connected_broker()).consume(["q"], prefetch=1) as consumer:
        assert len(await consumer.fetch(1, timeout=1)) == 1
    worker = Worker(app, queues=["q"], concurrency=2, heartbeat_interval=0, fetch_timeout=0.1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.serve)
        await worker.wait_started()
        assert await handed_back.get(timeout=10) == 2
        assert await (await ok.delay(21)).get(timeout=10) == 42
        assert await (await flaky.delay()).get(timeout=10) == 2
        failed = await doomed.delay()
        try:
            await failed.get(timeout=10)
        except TaskFailedError:
            pass
        else:
            raise AssertionError("hooks.doomed succeeded")
        worker.stop()
    await app.close()

    # A lost lease needs a slow ack: tests/test_task_logs.py reaches that hook.
    assert {name for name, _ in recorder.seen} == set(OBSERVER_HOOKS) - {"chicory_task_lease_lost"}
    (redelivered,) = recorder.of("chicory_task_redelivered")
    assert (redelivered.task_id, redelivered.delivery_count) == (handed_back.id, 2)
    (started,) = recorder.of("chicory_worker_started")
    (stopping,) = recorder.of("chicory_worker_stopping")
    for event in (started, stopping):
        assert isinstance(event, WorkerEvent)
        assert event.worker_id == worker.worker_id
        assert event.queues == ("q",)
    assert recorder.seen[0][0] == "chicory_worker_started"

    (succeeded_ok, _) = [
        e for e in recorder.of("chicory_task_succeeded") if e.task_name == "hooks.ok"
    ]
    assert succeeded_ok.delivery_mode == "at_most_once"
    assert succeeded_ok.runtime is not None
    (retried,) = recorder.of("chicory_task_retried")
    assert (retried.task_name, retried.attempt, retried.delay) == ("hooks.flaky", 1, 0)
    assert retried.error is not None
    assert retried.error.type.endswith("ValueError")
    (failure,) = recorder.of("chicory_task_failed")
    (dead,) = recorder.of("chicory_task_dead_lettered")
    assert failure.task_id == dead.task_id == failed.id
    assert dead.reason is not None
    assert "always" in dead.reason
    names = [e.task_name for e in recorder.of("chicory_task_started")]
    assert sorted(names) == ["hooks.doomed", "hooks.flaky", "hooks.flaky", "hooks.ok", "hooks.ok"]
    assert len(recorder.of("chicory_task_received")) == 5
    assert len(recorder.of("chicory_task_succeeded")) == 3, "a raising observer hid events"
