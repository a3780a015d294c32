"""The floor: what plain redis-py does on this machine with the same Redis Streams work.

* enqueue floor: pipelined ``XADD`` (non-transactional pipelines of ``batch`` commands),
  with the same fields Chicory's Redis broker writes (a 32-hex id, a delivery count, headers
  and a ~200-byte JSON body);
* consume floor: ``XREADGROUP COUNT n`` then one ``XACK`` of the whole batch, in a loop,
  on a stream filled beforehand (``n`` = the Chicory worker's capacity).

Both use ``redis.asyncio`` with hiredis, the client stack Chicory's broker uses, in one
process. Every Chicory number is reported as a fraction of these.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import redis.asyncio as aioredis
from common import Measurement, Settings

__all__ = ["BODY", "run_floor"]

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
                fields = {"id": uuid.uuid4().hex, "n": "0", "headers": "{}", "body": BODY}
                pipe.xadd(stream, fields)  # type: ignore[arg-type]
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
