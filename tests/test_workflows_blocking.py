"""Workflows sent from synchronous code (``flow.blocking``), on memory:// and on Redis.

On memory:// a :class:`~chicory.testkit.BlockingLocalWorker` runs the steps in this process:
chains, groups and chords sent from the main thread and from many threads at once, the
group handle's progress, failures, and the refusal inside an event loop. On Redis a
``chicory worker callers_app:app`` process runs them, and flows are sent from threads and
from a forked child, which makes connections of its own.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from callers_app import build
from chicory import Chicory, RetryPolicy, TaskFailedError, blocking
from chicory.blocking import BlockingResult
from chicory.errors import BlockingCallError, ResultBackendError, WorkflowError
from chicory.records import TaskState
from chicory.testkit import BlockingLocalWorker
from chicory.workflow import GroupResult, chain, chord, group
from chicory.workflow.blocking import BlockingGroupResult
from processes import WorkerProcess, delete_keys, free_port, wait_for_child, worker_process


def memory_app() -> Chicory:
    app = Chicory("memory://", retry_policy=RetryPolicy.never())

    @app.task(name="bf.add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="bf.mul")
    def mul(x: int, y: int) -> int:
        return x * y

    @app.task(name="bf.total")
    async def total(values: list[int]) -> int:
        return sum(values)

    @app.task(name="bf.boom")
    async def boom(x: int) -> int:
        raise ValueError(f"boom {x}")

    return app


def test_chains_groups_and_chords_from_synchronous_code() -> None:
    app = memory_app()
    add, mul, total = app.tasks["bf.add"], app.tasks["bf.mul"], app.tasks["bf.total"]
    with BlockingLocalWorker(app) as local:
        one = add.s(2, 3).blocking.apply_async()
        piped = (add.s(1, 2) | mul.s(10) | add.s(5)).blocking.apply_async()
        members = group(mul.s(n, n) for n in range(5)).blocking.apply_async()
        fan_in = chord(
            [add.s(n, 1) | mul.s(2) for n in range(10)], total.s()
        ).blocking.apply_async()
        ends_in_group = chain(add.s(1, 1), group(mul.s(3), mul.s(4))).blocking.apply_async()
        local.run_until_idle()
        assert isinstance(one, BlockingResult)
        assert one.get(timeout=10) == 5
        assert one.state() is TaskState.SUCCESS
        assert isinstance(piped, BlockingResult)
        assert piped.get(timeout=10) == 35
        assert isinstance(members, BlockingGroupResult)
        assert members.get(timeout=10) == [0, 1, 4, 9, 16]
        assert len(members) == 5
        assert members.ready()
        assert members.completed_count() == 5
        assert not members.failed()
        assert [r.get(timeout=10) for r in members if isinstance(r, BlockingResult)] == [
            0,
            1,
            4,
            9,
            16,
        ]
        assert isinstance(fan_in, BlockingResult)
        assert fan_in.get(timeout=10) == sum((n + 1) * 2 for n in range(10))
        assert isinstance(ends_in_group, BlockingGroupResult)
        assert ends_in_group.get(timeout=10) == [6, 8]


def test_a_group_s_progress_and_its_handle_rebuilt_from_ids() -> None:
    app = memory_app()
    add = app.tasks["bf.add"]
    with BlockingLocalWorker(app) as local:
        first = group(add.s(n, 0) for n in range(3)).blocking.apply_async()
        ids = first.ids
        local.run_until_idle()
        never_sent = str(uuid.uuid4())
        rebuilt = BlockingGroupResult.of(app, [*ids, never_sent])
        assert rebuilt.ids == [*ids, never_sent]
        assert rebuilt.completed_count() == 3  # of 4: the one never sent is PENDING
        assert not rebuilt.ready()
        unknown = rebuilt[3]
        assert isinstance(unknown, BlockingResult)
        assert unknown.state() is TaskState.PENDING
        assert BlockingGroupResult.of(app, ids).get(timeout=10) == [0, 1, 2]
    with pytest.raises(ValueError, match="at least one task id"):
        BlockingGroupResult.of(app, [])


def test_a_failed_member_shows_in_the_group_handle() -> None:
    app = memory_app()
    add, boom = app.tasks["bf.add"], app.tasks["bf.boom"]
    with BlockingLocalWorker(app) as local:
        members = group(add.s(1, 1), boom.s(2), add.s(3, 3)).blocking.apply_async()
        nested = group(add.s(1, 1), group(add.s(2, 2), add.s(3, 3))).blocking.apply_async()
        local.run_until_idle()
        assert members.completed_count() == 3
        assert members.failed()
        with pytest.raises(TaskFailedError, match="boom 2"):
            members.get(timeout=10)
        assert nested.get(timeout=10) == [2, [4, 6]]
        assert isinstance(nested[1], BlockingGroupResult)
        assert nested.completed_count() == 2
        with pytest.raises(ValueError, match="is a group itself"):
            _ = nested.ids


def test_an_unreachable_backend_raises_its_own_error_for_a_group() -> None:
    """The members are read concurrently, and a failed read still raises the backend's
    error (not an exception group)."""
    app = Chicory(f"redis://127.0.0.1:{free_port()}/0")
    try:
        members = BlockingGroupResult.of(app, ["a", "b", "c"])
        with pytest.raises(ResultBackendError):
            members.completed_count()
        with pytest.raises(ResultBackendError):
            members.failed()
    finally:
        blocking.close(app)


def test_flows_sent_from_many_threads_at_once() -> None:
    app = memory_app()
    add, total = app.tasks["bf.add"], app.tasks["bf.total"]
    handles: dict[int, tuple[BlockingResult[int], BlockingGroupResult]] = {}
    failures: list[BaseException] = []

    def sender(n: int) -> None:
        try:
            fan_in = chord([add.s(n, i) for i in range(5)], total.s()).blocking.apply_async()
            members = group(add.s(n, i) for i in range(3)).blocking.apply_async()
            assert isinstance(fan_in, BlockingResult)
            handles[n] = (fan_in, members)
        except BaseException as exc:
            failures.append(exc)

    with BlockingLocalWorker(app) as local:
        threads = [threading.Thread(target=sender, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not failures, failures
        local.run_until_idle()
        for n, (fan_in, members) in handles.items():
            assert fan_in.get(timeout=10) == 5 * n + 10
            assert members.get(timeout=10) == [n, n + 1, n + 2]
    assert sorted(handles) == list(range(8))


def test_a_flow_is_refused_inside_an_event_loop() -> None:
    app = memory_app()
    add = app.tasks["bf.add"]

    async def inside() -> None:
        (add.s(1, 1) | add.s(1)).blocking.apply_async()

    with pytest.raises(BlockingCallError, match="await"):
        asyncio.run(inside())


def test_a_step_that_cannot_take_the_previous_result_is_refused_before_sending() -> None:
    app = memory_app()
    add = app.tasks["bf.add"]
    with pytest.raises(WorkflowError, match=r"bf\.add\.si"):
        (add.s(1, 1) | add.s(1, 2)).blocking.apply_async()


# -- Redis, with a worker process ----------------------------------------------------------


def url_of(prefix: str, client: str = "") -> str:
    """The test's Redis URL; connections are named after the prefix (and ``client``)."""
    return f"redis://127.0.0.1:6379/0?key_prefix={prefix}&client_name={prefix}{client}"


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"t-blocking-flow-{uuid.uuid4().hex[:8]}"
    yield name
    delete_keys(name)


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


def test_flows_from_threads_on_redis(app: Chicory, worker: WorkerProcess) -> None:
    add, total = app.tasks["callers.add"], app.tasks["callers.total"]
    failures: list[BaseException] = []

    def sender(n: int) -> None:
        try:
            for i in range(5):
                piped = (add.s(n, i) | add.s(1)).blocking.apply_async()
                assert isinstance(piped, BlockingResult)
                assert piped.get(timeout=30) == n + i + 1
            fan_in = chord([add.s(n, i) for i in range(4)], total.s()).blocking.apply_async()
            assert isinstance(fan_in, BlockingResult)
            assert fan_in.get(timeout=30) == 4 * n + 6
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=sender, args=(100 * n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures


def test_a_forked_child_sends_flows_on_connections_of_its_own(
    app: Chicory, worker: WorkerProcess
) -> None:
    add, total = app.tasks["callers.add"], app.tasks["callers.total"]
    before = group(add.s(1, i) for i in range(3)).blocking.apply_async()
    assert before.get(timeout=30) == [1, 2, 3]
    parent_portal = blocking.portal_thread()
    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            assert blocking.portal_thread() is None
            members = group(add.s(10, i) for i in range(4)).blocking.apply_async()
            fan_in = chord([add.s(10, i) for i in range(4)], total.s()).blocking.apply_async()
            values = members.get(timeout=30)
            counted = members.completed_count()
            summed = fan_in.get(timeout=30) if isinstance(fan_in, BlockingResult) else None
            code = 0 if (values, counted, summed) == ([10, 11, 12, 13], 4, 46) else 2
        finally:
            os._exit(code)
    assert wait_for_child(child, 90) == 0
    assert blocking.portal_thread() is parent_portal
    after = chord([add.s(2, i) for i in range(3)], total.s()).blocking.apply_async()
    assert isinstance(after, BlockingResult)
    assert after.get(timeout=30) == 9
    rebuilt = BlockingGroupResult(GroupResult.of(app, before.ids))
    assert rebuilt.completed_count() == 3
