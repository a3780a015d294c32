"""Workflows end to end on the memory broker: chains, groups, chords, failures, nesting."""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from chicory import Chicory, DeliveryMode, RetryPolicy, TaskContext, TaskFailedError
from chicory.errors import WorkflowError
from chicory.records import TaskState
from chicory.result import AsyncResult
from chicory.workflow import GroupResult, chain, chord, group
from e2e_support import eventually, serving

MODES = [DeliveryMode.AT_LEAST_ONCE, DeliveryMode.AT_MOST_ONCE]


def make_app(mode: DeliveryMode = DeliveryMode.AT_LEAST_ONCE) -> Chicory:
    app = Chicory(broker="memory://", delivery_mode=mode, retry_policy=RetryPolicy.never())

    @app.task(name="wf.add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="wf.mul")
    def mul(x: int, y: int) -> int:  # a sync step
        return x * y

    @app.task(name="wf.total")
    async def total(values: list[int]) -> int:
        return sum(values)

    @app.task(name="wf.boom")
    async def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    @app.task(name="wf.const")
    async def const() -> str:
        return "const"

    return app


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
async def test_a_chain_passes_each_result_to_the_next_step(mode: DeliveryMode) -> None:
    app = make_app(mode)
    add, mul = app.tasks["wf.add"], app.tasks["wf.mul"]
    async with serving(app, concurrency=1):
        flow = await chain(add.s(1, 2), mul.s(10), add.s(5)).apply_async()
        assert isinstance(flow, AsyncResult)
        assert await flow.get(timeout=10) == (1 + 2) * 10 + 5
        piped = await (add.s(1, 1) | add.s(1)).apply_async()
        assert await piped.get(timeout=10) == 3


async def test_an_immutable_step_ignores_the_previous_result() -> None:
    app = make_app()
    add, const = app.tasks["wf.add"], app.tasks["wf.const"]
    async with serving(app):
        flow = await chain(add.s(1, 2), const.si()).apply_async()
        assert await flow.get(timeout=10) == "const"


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
async def test_a_chord_of_100_completes_at_concurrency_1(mode: DeliveryMode) -> None:
    """Nothing waits in a worker slot: one slot runs all members, then the callback."""
    app = make_app(mode)
    add, total = app.tasks["wf.add"], app.tasks["wf.total"]
    async with serving(app, concurrency=1):
        flow = await chord([add.s(i, i) for i in range(100)], total.s()).apply_async()
        assert await flow.get(timeout=30) == sum(2 * i for i in range(100))


async def test_a_group_collects_results_in_member_order() -> None:
    app = make_app()
    add, mul = app.tasks["wf.add"], app.tasks["wf.mul"]
    async with serving(app, concurrency=4):
        handle = await group(add.s(1, 1), chain(add.s(2, 2), mul.s(3)), mul.s(5, 5)).apply_async()
        assert isinstance(handle, GroupResult)
        assert await handle.get(timeout=10) == [2, 12, 25]
        generated = await group(add.s(i, 0) for i in range(5)).apply_async()
        assert await generated.get(timeout=10) == [0, 1, 2, 3, 4]


async def test_flows_nest() -> None:
    """A chain holding a group whose member is a chain holding a group, then more steps."""
    app = make_app()
    add, mul, total = app.tasks["wf.add"], app.tasks["wf.mul"], app.tasks["wf.total"]
    inner = chain(add.s(1), group(mul.s(2), mul.s(3)), total.s())  # 1 -> 2 -> [4, 6] -> 10
    async with serving(app, concurrency=2):
        flow = await chain(add.s(0, 1), group(add.s(1), inner), total.s(), add.s(100)).apply_async()
        assert await flow.get(timeout=10) == (2 + 10) + 100


async def test_a_step_that_cannot_take_the_result_is_refused_when_sent() -> None:
    app = make_app()
    add = app.tasks["wf.add"]
    with pytest.raises(WorkflowError, match=r"wf\.add\.si"):
        await chain(add.s(1, 2), add.s(3, 4)).apply_async()


async def test_a_failed_step_fails_the_chain_and_marks_the_rest() -> None:
    app = make_app()
    add, boom = app.tasks["wf.add"], app.tasks["wf.boom"]
    async with serving(app):
        flow = await chain(add.s(1, 2), boom.s(), add.s(1), add.s(2)).apply_async()
        with pytest.raises(TaskFailedError) as caught:
            await flow.get(timeout=10)
    assert caught.value.exc_type == "chicory.errors.WorkflowError"
    assert "wf.boom" in caught.value.exc_message
    assert "boom 3" in caught.value.exc_message
    record = await flow.info()
    assert record is not None
    assert (record.state, record.attempt) == (TaskState.FAILURE, 0)


async def test_a_chord_with_failed_members_skips_its_callback() -> None:
    app = make_app()
    add, boom, total = app.tasks["wf.add"], app.tasks["wf.boom"], app.tasks["wf.total"]
    ran: list[list[int]] = []

    @app.task(name="wf.record")
    async def record(values: list[int]) -> None:
        ran.append(values)

    async with serving(app, concurrency=2):
        members = [add.s(1, 1), boom.s(7), add.s(2, 2), boom.s(8)]
        flow = await chord(members, chain(record.s(), total.si([1]))).apply_async()
        with pytest.raises(TaskFailedError) as caught:
            await flow.get(timeout=10)
    assert ran == [], "the callback ran although members failed"
    message = caught.value.exc_message
    for part in ("2 of 4 members", "boom 7", "boom 8"):
        assert part in message


async def test_a_flow_needing_a_join_is_refused_without_joins() -> None:
    from chicory_memory.results import MemoryResultBackend

    class NoJoins:
        """A result backend without the join power (every other method delegated)."""

        def __init__(self) -> None:
            self._inner = MemoryResultBackend()

        def __getattr__(self, name: str) -> object:
            if name == "join":
                raise AttributeError(name)
            return getattr(self._inner, name)

    app = Chicory(broker="memory://", backend=NoJoins())  # type: ignore[arg-type]

    @app.task(name="wf.one")
    async def one() -> int:
        return 1

    @app.task(name="wf.sum")
    async def total(values: list[int]) -> int:
        return sum(values)

    from chicory.errors import CapabilityError

    with pytest.raises(CapabilityError, match="joins groups"):
        await chord([one.s(), one.s()], total.s()).apply_async()
    alone = await group(one.s(), one.s()).apply_async()  # no join needed
    assert len(alone) == 2
    await app.close()


async def test_steps_run_where_no_slot_is_held() -> None:
    """At concurrency 1 a chain of 20 steps runs; each step is a separate run."""
    app = make_app()
    add = app.tasks["wf.add"]
    seen: list[int] = []

    @app.task(name="wf.count")
    async def count(ctx: TaskContext, x: int) -> int:
        seen.append(ctx.delivery_count)
        await anyio.lowlevel.checkpoint()
        return x + 1

    async with serving(app, concurrency=1):
        flow = await chain(add.s(0, 0), *[count.s() for _ in range(20)]).apply_async()
        assert await flow.get(timeout=10) == 20
    assert seen == [1] * 20


async def test_a_chord_on_sqlite(tmp_path: Path) -> None:
    """The SQLite result backend joins groups too (one transaction per join)."""
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    app = Chicory(broker=url, backend=url)

    @app.task(name="wf.sq")
    async def square(x: int) -> int:
        return x * x

    @app.task(name="wf.sqsum")
    async def total(values: list[int]) -> int:
        return sum(values)

    async with serving(app, concurrency=2):
        flow = await chord([square.s(i) for i in range(20)], total.s()).apply_async()
        assert await flow.get(timeout=30) == sum(i * i for i in range(20))
    await app.close()


async def test_replaying_a_failed_step_resumes_its_flow() -> None:
    """A failed step's dead letter keeps its flow: replayed and successful, it publishes the
    rest under the same ids, replacing the records its failure wrote."""
    from chicory.admin import Admin

    app = make_app()
    add = app.tasks["wf.add"]
    broken = [True]

    @app.task(name="wf.flaky")
    async def flaky(x: int) -> int:
        if broken[0]:
            raise ConnectionError("the service is down")
        return x * 2

    async with serving(app):
        flow = await chain(add.s(1, 2), flaky.s(), add.s(1), add.s(10)).apply_async()
        with pytest.raises(TaskFailedError):
            await flow.get(timeout=10)
        broken[0] = False
        admin = Admin(app)
        await admin.replay(await admin.select())

        async def succeeded() -> bool:
            return await flow.state() is TaskState.SUCCESS

        await eventually(succeeded)
        assert await flow.get(timeout=10) == 3 * 2 + 1 + 10


async def test_a_malformed_flow_header_drops_the_rest_and_the_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from chicory.envelope import TaskMessage
    from chicory.headers import FLOW_HEADER

    app = make_app()
    add = app.tasks["wf.add"]
    message = TaskMessage(id="bad-flow", task="wf.add", args=[1, 2], created_at=app.utcnow())
    body, headers = app.codec.encode(message, {FLOW_HEADER: '{"next": "nope"}'})
    broker = await app.connected_broker()
    await broker.publish("default", body, headers)
    async with serving(app):
        assert await AsyncResult(app, "bad-flow", add).get(timeout=10) == 3
        assert await (await add.delay(2, 2)).get(timeout=10) == 4  # the worker goes on
    assert "malformed chicory-flow header" in caplog.text
    counts = await broker.counts("default")
    assert (counts.ready, counts.in_flight, counts.dead) == (0, 0, 0)


async def test_a_signed_flow_runs_and_a_tampered_one_is_refused() -> None:
    from chicory.headers import FLOW_HEADER
    from chicory.workflow.links import Continuation, StepNode, encode_continuation

    app = Chicory(broker="memory://", signing_key="k" * 32, retry_policy=RetryPolicy.never())

    @app.task(name="wf.inc")
    async def inc(x: int) -> int:
        return x + 1

    async with serving(app):
        flow = await chain(inc.s(0), inc.s(), inc.s()).apply_async()
        assert await flow.get(timeout=10) == 3
        # Someone who can write to the broker but lacks the key swaps the rest of a flow.
        broker = await app.connected_broker()
        body, headers = app.codec.encode(
            inc.message([10], task_id="tampered"),
            {FLOW_HEADER: '{"next": [], "join": null}'},
        )
        evil = StepNode(task="wf.inc", id="evil", args=(), kwargs={}, queue="default")
        headers[FLOW_HEADER] = encode_continuation(Continuation(next=(evil,)))
        await broker.publish("default", body, headers)

        async def dead() -> bool:
            return (await broker.counts("default")).dead == 1

        await eventually(dead)
    assert await AsyncResult(app, "evil").state() is TaskState.PENDING


async def test_a_flow_runs_whole_under_the_test_kit() -> None:
    """An eager LocalWorker runs every step of a flow before apply_async returns."""
    from chicory.testkit import LocalWorker

    app = make_app()
    add, total = app.tasks["wf.add"], app.tasks["wf.total"]
    async with LocalWorker(app, eager=True):
        flow = await chord([add.s(i, 1) for i in range(5)], total.s()).apply_async()
        assert await flow.get(timeout=0) == 15
