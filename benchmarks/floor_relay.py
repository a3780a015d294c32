"""The latency floor's consumer: a plain redis-py relay, run as a separate process.

It reads a stream with ``XREADGROUP BLOCK``, publishes each entry's body on a channel (the
"result") and acks the entry, until it reads the body ``stop``. Usage (the harness runs it)::

    python floor_relay.py REDIS_URL STREAM GROUP CHANNEL
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis


async def relay(url: str, stream: str, group: str, channel: str) -> None:
    """Relay entries of ``stream`` to ``channel`` until a ``stop`` body arrives."""
    client = aioredis.Redis.from_url(url)
    try:
        while True:
            reply = await client.xreadgroup(group, "relay", {stream: ">"}, count=16, block=1000)
            for _name, entries in reply or ():
                for entry_id, fields in entries:
                    body = fields[b"body"]
                    if body == b"stop":
                        return
                    await client.publish(channel, body)
                    await client.xack(stream, group, entry_id)
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(relay(*sys.argv[1:5]))
