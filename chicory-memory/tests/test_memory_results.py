"""The memory result backend: TTLs on the clock, final records win, waits wake on the write."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from chicory.backend import StoredResult
from chicory.clock import ManualClock
from chicory.errors import ResultBackendError
from chicory_memory.results import MemoryResultBackend


@pytest.fixture
async def backend(clock: ManualClock) -> AsyncIterator[MemoryResultBackend]:
    async with MemoryResultBackend(clock=clock) as connected:
        yield connected


async def test_store_then_get(backend: MemoryResultBackend) -> None:
    assert await backend.get("t1") is None
    await backend.store("t1", b"started", final=False, ttl=60)
    assert await backend.get("t1") == b"started"
    await backend.store("t1", b"done", final=True, ttl=60)
    assert await backend.get("t1") == b"done"


async def test_records_expire_after_their_ttl(
    backend: MemoryResultBackend, clock: ManualClock
) -> None:
    await backend.store("t1", b"done", final=True, ttl=60)
    clock.advance(59.9)
    assert await backend.get("t1") == b"done"
    clock.advance(0.1)
    assert await backend.get("t1") is None
    assert await backend.wait("t1", timeout=0) is None


async def test_a_non_final_record_never_replaces_a_final_one(
    backend: MemoryResultBackend,
) -> None:
    await backend.store("t1", b"done", final=True, ttl=60)
    await backend.store("t1", b"late started", final=False, ttl=60)
    assert await backend.get("t1") == b"done"
    await backend.store_many([StoredResult(task_id="t1", data=b"again", final=False)], ttl=60)
    assert await backend.get("t1") == b"done"


async def test_the_first_final_record_wins(backend: MemoryResultBackend) -> None:
    await backend.store("t1", b"failure", final=True, ttl=60)
    await backend.store("t1", b"success", final=True, ttl=60)
    assert await backend.get("t1") == b"failure"


async def test_forget_makes_room_for_a_new_final_record(backend: MemoryResultBackend) -> None:
    """What a replay does: forget the old result, so the new run's result is stored."""
    await backend.store("t1", b"failure", final=True, ttl=60)
    await backend.forget("t1")
    await backend.store("t1", b"success", final=True, ttl=60)
    assert await backend.get("t1") == b"success"


async def test_a_non_final_record_may_follow_an_expired_final_one(
    backend: MemoryResultBackend, clock: ManualClock
) -> None:
    await backend.store("t1", b"done", final=True, ttl=1)
    clock.advance(1)
    await backend.store("t1", b"started", final=False, ttl=60)
    assert await backend.get("t1") == b"started"


async def test_store_many_writes_every_record(backend: MemoryResultBackend) -> None:
    await backend.store_many(
        [
            StoredResult(task_id="a", data=b"1", final=True),
            StoredResult(task_id="b", data=b"2", final=False),
        ],
        ttl=60,
    )
    assert (await backend.get("a"), await backend.get("b")) == (b"1", b"2")
    assert await backend.wait("a", timeout=0) == b"1"
    assert await backend.wait("b", timeout=0) is None


async def test_wait_returns_at_once_when_the_result_is_there(
    backend: MemoryResultBackend,
) -> None:
    await backend.store("t1", b"done", final=True, ttl=60)
    with anyio.fail_after(5):
        assert await backend.wait("t1", timeout=None) == b"done"


async def test_wait_wakes_on_the_final_store(backend: MemoryResultBackend) -> None:
    results: list[bytes | None] = []

    async def waiter() -> None:
        results.append(await backend.wait("t1", timeout=30))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        await backend.store("t1", b"started", final=False, ttl=60)
        await anyio.wait_all_tasks_blocked()
        assert results == []
        await backend.store_many([StoredResult(task_id="t1", data=b"done", final=True)], ttl=60)
    assert results == [b"done", b"done"]


async def test_wait_times_out_with_none(backend: MemoryResultBackend) -> None:
    assert await backend.wait("t1", timeout=0.01) is None
    assert await backend.wait("t1", timeout=0) is None


async def test_close_wakes_waiters_with_none(backend: MemoryResultBackend) -> None:
    results: list[bytes | None] = []

    async def waiter() -> None:
        results.append(await backend.wait("t1", timeout=None))

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        await backend.close()
    assert results == [None]


async def test_cancelled_wait_leaves_no_waiter_behind(backend: MemoryResultBackend) -> None:
    with anyio.move_on_after(0.01):
        await backend.wait("t1", timeout=None)
    await backend.store("t1", b"done", final=True, ttl=60)
    assert await backend.wait("t1", timeout=0) == b"done"


async def test_heartbeats_list_live_workers(
    backend: MemoryResultBackend, clock: ManualClock
) -> None:
    await backend.heartbeat("w1", b"one", ttl=10)
    await backend.heartbeat("w2", b"two", ttl=30)
    assert dict(await backend.workers()) == {"w1": b"one", "w2": b"two"}
    clock.advance(10)
    assert dict(await backend.workers()) == {"w2": b"two"}
    await backend.heartbeat("w1", b"back", ttl=10)
    assert dict(await backend.workers()) == {"w1": b"back", "w2": b"two"}


async def test_ttl_must_be_positive(backend: MemoryResultBackend) -> None:
    with pytest.raises(ValueError, match="ttl"):
        await backend.store("t1", b"x", final=True, ttl=0)
    with pytest.raises(ValueError, match="ttl"):
        await backend.heartbeat("w", b"x", ttl=-1)


async def test_operations_need_a_connected_backend(clock: ManualClock) -> None:
    backend = MemoryResultBackend(clock=clock)
    with pytest.raises(ResultBackendError, match="not connected"):
        await backend.store("t1", b"x", final=True, ttl=60)
    async with backend:
        await backend.store("t1", b"x", final=True, ttl=60)
    with pytest.raises(ResultBackendError):
        await backend.get("t1")
    with pytest.raises(ResultBackendError):
        await backend.wait("t1", timeout=0)
    await backend.connect()
    assert await backend.get("t1") == b"x"


async def test_expired_records_are_swept(backend: MemoryResultBackend, clock: ManualClock) -> None:
    for i in range(100):
        await backend.store(f"t{i}", b"x", final=True, ttl=1)
    clock.advance(1)
    await backend.store("fresh", b"y", final=True, ttl=1)
    assert "records=1 " in repr(backend)
