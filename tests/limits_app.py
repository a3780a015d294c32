"""The app that subprocess workers of ``test_flow_control_redis.py`` (and of
``chicory-postgres/tests/test_flow_priorities.py``) run.

The broker comes from ``CHICORY_BROKER_URL``, the rate limit of ``flow.rated`` from
``CHICORY_TEST_RATE`` (default ``50/s``). Tasks write what they observe to Redis lists
named from ``CHICORY_TEST_KEYS`` (a test's own prefix on the shared Redis): every start of
the rate-limited task pushes the Redis server's time, every run of the
concurrency-limited task pushes how many of its runs were inside it at once, and the slow
task pushes its number when it starts and when it ends.
"""

from __future__ import annotations

import os

import anyio
from redis.asyncio import Redis

from chicory import Chicory, DeliveryMode

app = Chicory()
KEYS = os.environ.get("CHICORY_TEST_KEYS", "chicory-flow-test")
RATE = os.environ.get("CHICORY_TEST_RATE", "50/s")
REDIS_URL = os.environ.get("CHICORY_TEST_REDIS", "redis://127.0.0.1:6379/0")
_client: Redis | None = None


def client() -> Redis:
    """One client per worker process (made on its event loop)."""
    global _client
    if _client is None:
        _client = Redis.from_url(REDIS_URL)
    return _client


@app.task(name="flow.rated", rate_limit=RATE, delivery_mode=DeliveryMode.AT_MOST_ONCE)
async def rated(n: int) -> None:
    """Record the server time of this start (microseconds)."""
    seconds, micros = await client().time()
    await client().rpush(f"{KEYS}:starts", seconds * 1_000_000 + micros)


@app.task(name="flow.capped", concurrency_limit=3)
async def capped(n: int) -> None:
    """Record how many runs are inside at once, stay a while, leave."""
    inside = await client().incr(f"{KEYS}:inside")
    await client().rpush(f"{KEYS}:seen", inside)
    await anyio.sleep(0.05)
    await client().decr(f"{KEYS}:inside")


@app.task(name="flow.free")
async def free(n: int) -> None:
    """An unlimited task: counts its runs."""
    await client().incr(f"{KEYS}:free")


@app.task(name="flow.slow", concurrency_limit=2)
async def slow(n: int) -> None:
    """Hold one of two permits for two seconds: records its start and its end."""
    await client().rpush(f"{KEYS}:slow-started", n)
    await anyio.sleep(2)
    await client().rpush(f"{KEYS}:slow-done", n)
