"""The floor: what plain redis-py does on this machine with the same Redis Streams work.

* enqueue floor: pipelined ``XADD`` (non-transactional pipelines of ``batch`` commands),
  of entries shaped like those Chicory's Redis broker writes (one field holding a 32-hex id,
  a delivery count, headers and a ~200-byte JSON body, newline-separated);
* consume floor: ``XREADGROUP COUNT n`` then one ``XACK`` of the whole batch, in a loop,
  on a stream filled beforehand (``n`` = the Chicory worker's capacity);
* latency floor: the open-loop producer's path with nothing but redis-py on it: ``XADD``
  of the body, a separate relay process (:mod:`floor_relay`) that reads it with
  ``XREADGROUP BLOCK``, publishes it, acks it, and a pub/sub subscriber here that
  resolves the waiting call. The same four hops as a Chicory round trip (producer → Redis →
  worker → Redis → producer), with no task queue on them.

Both use ``redis.asyncio`` with hiredis, the client stack Chicory's broker uses, in one
process. Every Chicory number is reported as a fraction of these.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from typing import Any

import redis.asyncio as aioredis
from common import Measurement, Settings, child_process
from driver import measure_open_loop

__all__ = ["BODY", "run_floor", "run_latency_floor"]

BODY = (
    b'{"v":1,"id":"2cbb753203364c90916c20727c331a1b","task":"bench.noop_alo",'
    b'"args":["run-0000000000",10000],"kwargs":{},"attempt":1,"queue":"default",'
    b'"created_at":"2026-01-01T00:00:00.000000+00:00","eta":null}'
)


async def run_floor(settings: Settings, tasks: int, fetch: int) -> Measurement:
    """Measure pipelined XADD and XREADGROUP+XACK rates (messages/s) once.

    Args:
        settings: Where Redis is and the pipeline batch size.
        tasks: Messages to add and then consume.
        fetch: ``COUNT`` of each ``XREADGROUP``.
    """
    client = aioredis.Redis.from_url(settings.redis_url)
    stream = f"floor:{uuid.uuid4().hex}"
    group = "floor"
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
        start = time.perf_counter()
        for offset in range(0, tasks, settings.batch):
            pipe = client.pipeline(transaction=False)
            for _ in range(min(settings.batch, tasks - offset)):
                packed = b"%s\n0\n{}\n%s" % (uuid.uuid4().hex.encode(), BODY)
                pipe.xadd(stream, {"m": packed})
            await pipe.execute()
        added = time.perf_counter()

        consumed = 0
        while consumed < tasks:
            reply: Any = await client.xreadgroup(
                group, "c1", {stream: ">"}, count=fetch, block=1000
            )
            if not reply:
                raise RuntimeError("floor consumer found the stream empty before the end")
            entries = reply[0][1]
            ids = [entry_id for entry_id, _fields in entries]
            await client.xack(stream, group, *ids)
            consumed += len(ids)
        done = time.perf_counter()
    finally:
        await client.delete(stream)
        await client.aclose()
    return Measurement({"xadd": tasks / (added - start), "xreadgroup_xack": tasks / (done - added)})


async def run_latency_floor(settings: Settings) -> Measurement:
    """Open-loop latency of the bare XADD -> relay -> PUBLISH path (p50/p99 in ms)."""
    client = aioredis.Redis.from_url(settings.redis_url)
    stream, group = f"floor-latency:{uuid.uuid4().hex}", "floor"
    channel = f"{stream}:done"
    waiting: dict[bytes, asyncio.Future[None]] = {}
    pubsub = client.pubsub()

    async def listen() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                future = waiting.pop(message["data"], None)
                if future is not None and not future.done():
                    future.set_result(None)

    async def call(x: int) -> None:
        key = b"%d" % x
        future = waiting[key] = asyncio.get_running_loop().create_future()
        await client.xadd(stream, {"body": key})
        await asyncio.wait_for(future, 30)

    argv = [sys.executable, "floor_relay.py", settings.redis_url, stream, group, channel]
    try:
        await client.xgroup_create(stream, group, id="$", mkstream=True)
        await pubsub.subscribe(channel)
        listener = asyncio.create_task(listen())
        try:
            with child_process(argv) as relay:
                for x in range(-50, 0):  # warm up, and wait for the relay to start
                    await call(x)
                result = await measure_open_loop(
                    call, settings.latency_rate, settings.latency_seconds
                )
                await client.xadd(stream, {"body": b"stop"})
                await asyncio.to_thread(relay.wait, 15)
        finally:
            listener.cancel()
            await pubsub.aclose()
    finally:
        await client.delete(stream)
        await client.aclose()
    return result
