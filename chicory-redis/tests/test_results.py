"""The Redis result backend: TTLs, final records, waiting without polling, heartbeats."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from chicory.backend import ResultBackend, StoredResult
from chicory.errors import ResultBackendError
from chicory_redis.results import RedisResultBackend
from chicory_redis.waiters import INLINE_MAX, parse_notification

BackendFactory = Callable[..., Awaitable[RedisResultBackend]]


async def test_store_and_get_with_a_ttl_on_the_key(
    backend: RedisResultBackend, raw_redis: aioredis.Redis
) -> None:
    assert isinstance(backend, ResultBackend)
    assert await backend.get("t1") is None
    await backend.store("t1", b"\x00record", final=False, ttl=100)
    assert await backend.get("t1") == b"\x00record"
    ttl_ms = await raw_redis.pttl(backend.keys.result("t1"))
    assert 0 < ttl_ms <= 100_000


async def test_default_ttl_applies_when_none_is_given(
    make_backend: BackendFactory, raw_redis: aioredis.Redis
) -> None:
    backend = await make_backend(result_ttl=50)
    await backend.store("t1", b"x", final=True, ttl=0)
    assert 0 < await raw_redis.pttl(backend.keys.result("t1")) <= 50_000


async def test_nothing_replaces_a_final_record(backend: RedisResultBackend) -> None:
    await backend.store("t1", b"started", final=False, ttl=60)
    await backend.store("t1", b"success", final=True, ttl=60)
    await backend.store("t1", b"late started", final=False, ttl=60)
    assert await backend.get("t1") == b"success"
    await backend.store("t1", b"replaced", final=True, ttl=60)
    assert await backend.get("t1") == b"success"  # the first final record wins


async def test_store_many_writes_all_with_the_same_rules(
    backend: RedisResultBackend, raw_redis: aioredis.Redis
) -> None:
    await backend.store("done", b"final", final=True, ttl=60)
    await backend.store_many(
        [
            StoredResult(task_id="done", data=b"late", final=False),
            StoredResult(task_id="a", data=b"A", final=True),
            StoredResult(task_id="b", data=b"B", final=False),
        ],
        ttl=60,
    )
    assert [await backend.get(t) for t in ("done", "a", "b")] == [b"final", b"A", b"B"]
    for task_id in ("done", "a", "b"):
        assert await raw_redis.pttl(backend.keys.result(task_id)) > 0


async def test_wait_returns_at_once_when_final_and_none_on_timeout(
    backend: RedisResultBackend,
) -> None:
    await backend.store("t1", b"done", final=True, ttl=60)
    assert await backend.wait("t1", timeout=5) == b"done"
    assert await backend.wait("t1", timeout=0) == b"done"
    await backend.store("t2", b"running", final=False, ttl=60)
    assert await backend.wait("t2", timeout=0.1) is None
    assert await backend.wait("never", timeout=0.1) is None


async def test_waits_time_out_in_deadline_order_whatever_order_they_start_in(
    backend: RedisResultBackend,
) -> None:
    loop = asyncio.get_running_loop()
    start = loop.time()
    ends: dict[str, float] = {}

    async def wait(task_id: str, timeout: float) -> None:
        assert await backend.wait(task_id, timeout=timeout) is None
        ends[task_id] = loop.time() - start

    async with asyncio.TaskGroup() as group:
        group.create_task(wait("long", 0.6))
        group.create_task(wait("short", 0.2))  # earlier than the deadline already set
        group.create_task(wait("mid", 0.4))
    assert 0.2 <= ends["short"] < ends["mid"] < ends["long"]
    assert ends["mid"] >= 0.4
    assert ends["long"] >= 0.6


async def test_finished_waits_do_not_pile_up_until_their_timeouts(
    backend: RedisResultBackend,
) -> None:
    """Thousands of results awaited with a long timeout: what is done is let go of."""
    ids = [f"t{i}" for i in range(5000)]
    await backend.store_many(
        [StoredResult(task_id=i, data=i.encode(), final=True) for i in ids], ttl=60
    )
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        got = await asyncio.gather(*(backend.wait(i, timeout=600) for i in chunk))
        assert got == [i.encode() for i in chunk]
    assert backend.waiters.waiting == 0
    assert backend.waiters.timeouts < 2000  # bounded by the live waiters, not by all 5,000


async def test_wait_wakes_on_a_final_record_written_by_another_instance(
    make_backend: BackendFactory,
) -> None:
    waiter, writer = await make_backend(), await make_backend()
    waiting = asyncio.create_task(waiter.wait("t1", timeout=10))
    await asyncio.sleep(0.05)
    await writer.store("t1", b"started", final=False, ttl=60)
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await writer.store("t1", b"result", final=True, ttl=60)
    assert await waiting == b"result"


async def test_many_waiters_share_one_connection(
    make_backend: BackendFactory, raw_redis: aioredis.Redis, prefix: str
) -> None:
    """200 waiters on a pool of 3 connections: one listens, the others serve short GETs."""
    name = f"{prefix}-waiters"
    waiter = await make_backend(max_connections=3, pool_timeout=2, client_name=name)
    writer = await make_backend()
    ids = [f"t{i}" for i in range(200)]
    tasks = [asyncio.create_task(waiter.wait(task_id, timeout=20)) for task_id in ids]
    await asyncio.sleep(0.3)
    clients = [c for c in await raw_redis.client_list() if c.get("name") == name]
    assert 1 <= len(clients) <= 3
    assert sum(int(c["sub"]) > 0 for c in clients) == 1
    await writer.store_many(
        [StoredResult(task_id=t, data=t.encode(), final=True) for t in ids], ttl=60
    )
    results = await asyncio.gather(*tasks)
    assert results == [t.encode() for t in ids]


async def test_close_wakes_waiters_with_none(make_backend: BackendFactory) -> None:
    backend = await make_backend()
    waiting = asyncio.create_task(backend.wait("t1", timeout=None))
    await asyncio.sleep(0.05)
    await backend.close()
    assert await waiting is None
    with pytest.raises(ResultBackendError):
        await backend.get("t1")


async def test_cancelled_wait_leaves_no_waiter_behind(backend: RedisResultBackend) -> None:
    waiting = asyncio.create_task(backend.wait("t1", timeout=None))
    await asyncio.sleep(0.05)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await backend.store("t1", b"done", final=True, ttl=60)
    assert await backend.wait("t1", timeout=1) == b"done"


async def test_waiters_of_one_task_come_and_go_independently(
    backend: RedisResultBackend,
) -> None:
    """Several waiters of one task id: one cancelled, one timed out, the others woken by
    the record, and nothing left behind."""
    waiters = backend.waiters
    cancelled = asyncio.create_task(backend.wait("t1", timeout=None))
    short = asyncio.create_task(backend.wait("t1", timeout=0.05))
    woken = [asyncio.create_task(backend.wait("t1", timeout=30)) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert waiters.waiting == 1
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await short is None
    await backend.store("t1", b"done", final=True, ttl=60)
    assert await asyncio.gather(*woken) == [b"done"] * 3
    assert waiters.waiting == 0
    assert await backend.wait("t1", timeout=1) == b"done"
    assert waiters.waiting == 0


async def test_waiting_on_a_closed_backend_is_an_error(
    make_backend: BackendFactory,
) -> None:
    backend = await make_backend()
    await backend.close()
    with pytest.raises(ResultBackendError, match="not connected"):
        await backend.wait("t1", timeout=1)


async def test_heartbeats_list_live_workers_only(
    backend: RedisResultBackend, raw_redis: aioredis.Redis
) -> None:
    await backend.heartbeat("w1", b"one", ttl=60)
    await backend.heartbeat("w2", b"two", ttl=0.05)
    assert 0 < await raw_redis.pttl(backend.keys.worker("w1")) <= 60_000
    await asyncio.sleep(0.1)
    assert await backend.workers() == {"w1": b"one"}
    await backend.heartbeat("w1", b"one again", ttl=60)
    assert await backend.workers() == {"w1": b"one again"}


@pytest.mark.parametrize("bulk_reads", [True, False], ids=["bulk", "through-pubsub"])
async def test_waiters_survive_the_listener_connection_being_killed(
    make_backend: BackendFactory, raw_redis: aioredis.Redis, prefix: str, bulk_reads: bool
) -> None:
    """A final record written while the listener is reconnecting still wakes its waiter."""
    name = f"{prefix}-listener"
    waiter = await make_backend(client_name=name, reconnect_backoff=0.2)
    waiter.waiters.bulk_reads = bulk_reads
    writer = await make_backend()
    waiting = asyncio.create_task(waiter.wait("t1", timeout=10))
    await asyncio.sleep(0.1)
    [listener] = [
        c for c in await raw_redis.client_list() if c.get("name") == name and int(c["sub"])
    ]
    await raw_redis.client_kill_filter(_id=listener["id"])
    await writer.store("t1", b"written while nobody listened", final=True, ttl=60)
    assert await waiting == b"written while nobody listened"


async def test_a_final_record_is_announced_with_its_task_id(
    backend: RedisResultBackend, raw_redis: aioredis.Redis
) -> None:
    pubsub = raw_redis.pubsub()
    await pubsub.subscribe(backend.keys.result_channel)
    try:
        assert (await pubsub.get_message(timeout=1) or {}).get("type") == "subscribe"
        await backend.store("t:1", b"started", final=False, ttl=60)
        await backend.store("t:1", b"done\n", final=True, ttl=60)
        big = b"x" * (INLINE_MAX + 1)
        await backend.store("t2", big, final=True, ttl=60)
        payloads: list[bytes] = []
        while len(payloads) < 2:
            message = await pubsub.get_message(timeout=1)
            assert message is not None
            if message["type"] == "message":
                payloads.append(message["data"])
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert payloads == [b"3:t:1Fdone\n", b"2:t2"]  # nothing for the non-final record
    assert [parse_notification(p) for p in payloads] == [("t:1", b"done\n"), ("t2", None)]
    assert await backend.get("t2") == big
    assert parse_notification(b"not one") is None
    assert parse_notification(b"9:short") is None
    assert parse_notification(b"2:t1Pnot final") is None


async def test_a_woken_waiter_reads_nothing_more(
    backend: RedisResultBackend, raw_redis: aioredis.Redis
) -> None:
    """The record comes with the notification: here the key does not even exist."""
    waiting = asyncio.create_task(backend.wait("t1", timeout=10))
    channel = backend.keys.result_channel
    for _ in range(500):  # until the listener is subscribed
        if dict(await raw_redis.pubsub_numsub(channel)).get(channel.encode(), 0):
            break
        await asyncio.sleep(0.01)
    await raw_redis.publish(channel, b"2:t1Ffrom the notification")
    assert await waiting == b"from the notification"
    assert await raw_redis.exists(backend.keys.result("t1")) == 0


async def test_a_record_too_large_to_announce_is_read_back(make_backend: BackendFactory) -> None:
    waiter, writer = await make_backend(), await make_backend()
    waiting = asyncio.create_task(waiter.wait("t1", timeout=10))
    await asyncio.sleep(0.05)
    record = bytes(range(256)) * (INLINE_MAX // 256 + 1)
    await writer.store("t1", record, final=True, ttl=60)
    assert await waiting == record


async def test_concurrent_waiters_share_one_read(backend: RedisResultBackend) -> None:
    ids = [f"t{i}" for i in range(300)]
    await backend.store_many(
        [StoredResult(task_id=t, data=t.encode(), final=True) for t in ids], ttl=60
    )
    before = backend.waiters.reads
    results = await asyncio.gather(*(backend.wait(t, timeout=10) for t in ids))
    assert results == [t.encode() for t in ids]
    assert backend.waiters.reads - before <= 2  # one MGET (+1 if the subscription landed)
    assert backend.waiters.waiting == 0


async def test_store_many_over_several_script_calls_announces_every_final(
    make_backend: BackendFactory, raw_redis: aioredis.Redis
) -> None:
    """Batches beyond one script call's worth, with a record too big to travel inline."""
    waiter, writer = await make_backend(), await make_backend()
    big = bytes(range(256)) * (INLINE_MAX // 256 + 1)
    ids = [f"t{i}" for i in range(1_200)]
    data = {t: (big if t == "t700" else t.encode()) for t in ids}
    waits = [asyncio.create_task(waiter.wait(t, timeout=20)) for t in ("t0", "t700", "t1199")]
    await asyncio.sleep(0.1)
    await writer.store_many(
        [StoredResult(task_id=t, data=data[t], final=True) for t in ids], ttl=60
    )
    assert await asyncio.gather(*waits) == [b"t0", big, b"t1199"]
    assert [await writer.get(t) for t in ("t499", "t500", "t1199")] == [b"t499", b"t500", b"t1199"]
    assert await raw_redis.pttl(writer.keys.result("t1000")) > 0


async def test_store_many_writes_large_records_a_few_per_call(backend: RedisResultBackend) -> None:
    """Large records are split across several script calls; every one is written."""
    records = [
        StoredResult(task_id=f"big{i}", data=bytes([i]) * 300_000, final=True) for i in range(10)
    ]
    await backend.store_many(records, ttl=60)
    assert [await backend.get(r.task_id) for r in records] == [r.data for r in records]
