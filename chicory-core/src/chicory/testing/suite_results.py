"""Result backends: storing, reading, waiting, expiring, and worker heartbeats."""

from __future__ import annotations

import asyncio
import contextlib

import anyio

from chicory.backend import ResultBackend, StoredResult
from chicory.clock import utcnow
from chicory.records import ResultRecord, TaskState, decode_record, encode_record
from chicory.testing.guarantees import Level, guarantee
from chicory.testing.harness import RESULTS_ENV, ResultsEnv
from chicory.testing.helpers import wait_until

__all__ = ["ResultBackendSuite"]

MUST, SHOULD = Level.MUST, Level.SHOULD
TTL = 60.0


def _record(task_id: str, state: TaskState, attempt: int = 1, result: object = None) -> bytes:
    return encode_record(
        ResultRecord(
            task_id=task_id,
            task="conformance.task",
            state=state,
            attempt=attempt,
            updated_at=utcnow(),
            result=result,
        )
    )


async def _state(backend: ResultBackend, task_id: str) -> TaskState | None:
    data = await backend.get(task_id)
    return None if data is None else decode_record(data, ResultRecord).state


class ResultBackendSuite:
    """Subclass with an empty body (``class TestResults(ResultBackendSuite): pass``)."""

    @guarantee("results.store_get", MUST, env=RESULTS_ENV)
    async def test_store_get(self, env: ResultsEnv) -> None:
        """MUST return the stored bytes for a task id, and None for an unknown one."""
        backend = await env.backend()
        task_id = env.task_id()
        assert await backend.get(task_id) is None, "get() of a task never stored returned a record"
        data = _record(task_id, TaskState.SUCCESS, result={"x": [1, "é"]})
        await backend.store(task_id, data, final=True, ttl=TTL)
        assert await backend.get(task_id) == data, "get() returned other bytes than were stored"
        assert await backend.get(env.task_id("other")) is None, (
            "get() of another task id returned a record"
        )

    @guarantee("results.new_event_loop", MUST, env=RESULTS_ENV)
    async def test_new_event_loop(self, env: ResultsEnv) -> None:
        """MUST work on a new event loop after close(), once the loop it connected on ended
        (after a wait on that loop)."""
        backend = env.unconnected_backend()
        before, after = env.task_id("before"), env.task_id("after")

        async def on_the_first_loop() -> None:
            await backend.connect()
            await backend.store(before, _record(before, TaskState.SUCCESS), final=True, ttl=TTL)
            assert await backend.wait(env.task_id("missing"), 0.05) is None

        # An application's first asyncio.run() ends without closing the backend.
        await anyio.to_thread.run_sync(asyncio.run, on_the_first_loop())
        with contextlib.suppress(Exception):  # that loop is gone: close may fail, must forget
            await backend.close()
        await backend.connect()
        assert await backend.get(before) is not None
        data = _record(after, TaskState.SUCCESS)

        async def store_later() -> None:
            await anyio.sleep(0.05)
            await backend.store(after, data, final=True, ttl=TTL)

        async with anyio.create_task_group() as group:
            group.start_soon(store_later)
            assert await backend.wait(after, 5) == data, "a waiter on the new loop was not woken"

    @guarantee("results.states_in_order", MUST, env=RESULTS_ENV)
    async def test_states_in_order(self, env: ResultsEnv) -> None:
        """MUST show each state as it is stored, and never let a late non-final hide a final one."""
        backend = await env.backend()
        task_id = env.task_id()
        steps = [
            (TaskState.STARTED, 1, False),
            (TaskState.RETRY, 1, False),
            (TaskState.STARTED, 2, False),
            (TaskState.SUCCESS, 2, True),
        ]
        for state, attempt, final in steps:
            await backend.store(task_id, _record(task_id, state, attempt), final=final, ttl=TTL)
            shown = await _state(backend, task_id)
            assert shown == state, f"stored {state.value} (attempt {attempt}); get() shows {shown}"
        await backend.store(task_id, _record(task_id, TaskState.STARTED, 3), final=False, ttl=TTL)
        assert await _state(backend, task_id) == TaskState.SUCCESS, "a late STARTED hid SUCCESS"

    @guarantee("results.final_once", MUST, env=RESULTS_ENV)
    async def test_final_once(self, env: ResultsEnv) -> None:
        """MUST keep the first final record: a second final one (a redelivered run, or a
        message claiming the same task id) is dropped without an error, by store and by
        store_many."""
        backend = await env.backend()
        first, second = env.task_id("one"), env.task_id("many")
        kept = _record(first, TaskState.SUCCESS, result="first")
        await backend.store(first, kept, final=True, ttl=TTL)
        await backend.store(first, _record(first, TaskState.FAILURE), final=True, ttl=TTL)
        assert await backend.get(first) == kept, "a second final store() replaced the first"
        kept = _record(second, TaskState.SUCCESS, result="first")
        await backend.store_many([StoredResult(task_id=second, data=kept, final=True)], ttl=TTL)
        late = _record(second, TaskState.SUCCESS, result="second")
        await backend.store_many([StoredResult(task_id=second, data=late, final=True)], ttl=TTL)
        assert await backend.get(second) == kept, "a second final store_many() replaced the first"
        assert await backend.wait(second, 1) == kept, "wait() did not return the first final"

    @guarantee("results.store_many", MUST, env=RESULTS_ENV)
    async def test_store_many(self, env: ResultsEnv) -> None:
        """MUST store every record of store_many under the same rules as store."""
        backend = await env.backend()
        ids = [env.task_id(f"t{i}") for i in range(4)]
        await backend.store(ids[0], _record(ids[0], TaskState.SUCCESS), final=True, ttl=TTL)
        records = [
            StoredResult(task_id=i, data=_record(i, TaskState.STARTED), final=False) for i in ids
        ]
        await backend.store_many(records, ttl=TTL)
        shown = await _state(backend, ids[0])
        assert shown == TaskState.SUCCESS, (
            f"a STARTED in store_many hid SUCCESS: get() shows {shown}"
        )
        for task_id in ids[1:]:
            shown = await _state(backend, task_id)
            assert shown == TaskState.STARTED, f"store_many stored STARTED; get() shows {shown}"

    @guarantee("results.wait_wakes", MUST, env=RESULTS_ENV)
    async def test_wait_wakes(self, env: ResultsEnv) -> None:
        """MUST wake a waiter when the final record is stored, and not on a non-final one."""
        backend = await env.backend()
        task_id = env.task_id()
        got: list[bytes | None] = []

        async def waiter() -> None:
            got.append(await backend.wait(task_id, timeout=20.0))

        final = _record(task_id, TaskState.SUCCESS, result=42)
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.2)
            await backend.store(task_id, _record(task_id, TaskState.STARTED), final=False, ttl=TTL)
            await anyio.sleep(0.3)
            assert got == [], "wait() returned on a non-final record"
            await backend.store(task_id, final, final=True, ttl=TTL)
        assert got == [final], f"expected wait() to return the final record; it returned {got}"

    @guarantee("results.wait_ready", MUST, env=RESULTS_ENV)
    async def test_wait_ready(self, env: ResultsEnv) -> None:
        """MUST return at once from wait() when the final record is already stored."""
        backend = await env.backend()
        task_id = env.task_id()
        final = _record(task_id, TaskState.FAILURE)
        await backend.store(task_id, final, final=True, ttl=TTL)
        with anyio.move_on_after(5):
            got = await backend.wait(task_id, timeout=None)
            assert got == final, f"wait() of a stored final record returned {got!r}"
            return
        raise AssertionError("wait() of a stored final record did not return within 5 s")

    @guarantee("results.wait_timeout", MUST, env=RESULTS_ENV)
    async def test_wait_timeout(self, env: ResultsEnv) -> None:
        """MUST return None from wait() when no final record arrives within the timeout."""
        backend = await env.backend()
        task_id = env.task_id()
        await backend.store(task_id, _record(task_id, TaskState.STARTED), final=False, ttl=TTL)
        with anyio.move_on_after(10):
            got = await backend.wait(task_id, timeout=0.3)
            assert got is None, f"wait() with no final record returned {got!r}, not None"
            return
        raise AssertionError("wait(timeout=0.3) with no final record was still waiting 10 s later")

    @guarantee("results.expiry", MUST, env=RESULTS_ENV)
    async def test_expiry(self, env: ResultsEnv) -> None:
        """MUST forget a record once its ttl has passed (get returns None)."""
        backend = await env.backend()
        task_id, keep = env.task_id("short"), env.task_id("long")
        await backend.store(task_id, _record(task_id, TaskState.SUCCESS), final=True, ttl=0.5)
        await backend.store(keep, _record(keep, TaskState.SUCCESS), final=True, ttl=TTL)

        async def expired() -> bool:
            return await backend.get(task_id) is None

        await wait_until(expired, within=10.0, what="expiry of a record stored with ttl=0.5")
        assert await backend.get(keep) is not None, "a record with a long ttl expired too"

    @guarantee("results.close_wakes_waiters", MUST, env=RESULTS_ENV)
    async def test_close_wakes_waiters(self, env: ResultsEnv) -> None:
        """MUST wake every waiter with None when the backend is closed."""
        backend = await env.backend()
        got: list[bytes | None] = []

        async def waiter() -> None:
            got.append(await backend.wait(env.task_id(), timeout=None))

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.2)
                await backend.close()
        assert got == [None], f"expected close() to wake the waiter with None; it got {got}"

    @guarantee("results.heartbeats", MUST, env=RESULTS_ENV)
    async def test_heartbeats(self, env: ResultsEnv) -> None:
        """MUST list live workers' heartbeats and drop them once their ttl has passed."""
        backend = await env.backend()
        alive, gone = env.task_id("alive"), env.task_id("gone")
        await backend.heartbeat(alive, b'{"w": 1}', ttl=TTL)
        await backend.heartbeat(gone, b'{"w": 2}', ttl=0.5)
        workers = await backend.workers()
        assert workers.get(alive) == b'{"w": 1}', f"workers() lists {workers} without it"
        assert workers.get(gone) == b'{"w": 2}', f"workers() lists {workers} without it"

        async def dropped() -> bool:
            return gone not in await backend.workers()

        await wait_until(dropped, within=10.0, what="expiry of a heartbeat with ttl=0.5")
        assert alive in await backend.workers(), "a heartbeat with a long ttl expired too"
