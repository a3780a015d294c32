"""Fixtures for tests against the real Redis at ``CHICORY_TEST_REDIS_URL`` (127.0.0.1:6379).

Every test gets its own key prefix; every key under it is deleted afterwards (``SCAN`` with
``MATCH`` on that prefix only). A Redis that is not running fails the tests: it is not a skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from chicory_redis.broker import RedisBroker
from chicory_redis.results import RedisResultBackend

REDIS_URL = os.environ.get("CHICORY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

BrokerFactory = Callable[..., Awaitable[RedisBroker]]
BackendFactory = Callable[..., Awaitable[RedisResultBackend]]


@pytest.fixture
def redis_url() -> str:
    """The URL of the test server."""
    return REDIS_URL


@pytest.fixture
async def raw_redis() -> AsyncIterator[aioredis.Redis]:
    """A plain client for looking at what the broker wrote."""
    client = aioredis.Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(raw_redis: aioredis.Redis) -> AsyncIterator[str]:
    """A key prefix private to this test; its keys are deleted afterwards."""
    name = f"chicory-test-{uuid.uuid4().hex[:12]}"
    yield name
    async for key in raw_redis.scan_iter(match=f"{name}:*", count=500):
        await raw_redis.delete(key)


@pytest.fixture
async def make_broker(prefix: str) -> AsyncIterator[BrokerFactory]:
    """Open connected brokers on the test prefix; all are closed after the test."""
    opened: list[RedisBroker] = []

    async def make(**options: Any) -> RedisBroker:
        options.setdefault("key_prefix", prefix)
        broker = RedisBroker.from_url(REDIS_URL, **options)
        await broker.connect()
        opened.append(broker)
        return broker

    yield make
    for broker in opened:
        await broker.close()


@pytest.fixture
async def broker(make_broker: BrokerFactory) -> RedisBroker:
    """A connected broker with short intervals (leases stay at 30 s)."""
    return await make_broker(reclaim_interval=0.05, delayed_poll_interval=0.05)


@pytest.fixture
async def make_backend(prefix: str) -> AsyncIterator[BackendFactory]:
    """Open connected result backends on the test prefix; all are closed after the test."""
    opened: list[RedisResultBackend] = []

    async def make(**options: Any) -> RedisResultBackend:
        options.setdefault("key_prefix", prefix)
        backend = RedisResultBackend.from_url(REDIS_URL, **options)
        await backend.connect()
        opened.append(backend)
        return backend

    yield make
    for backend in opened:
        await backend.close()


@pytest.fixture
async def backend(make_backend: BackendFactory) -> RedisResultBackend:
    """A connected result backend."""
    return await make_backend()
