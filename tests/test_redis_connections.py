"""Connections a Redis of the test's own drops, hangs or refuses, as producers meet them.

What a publish must say when its connection fails: "not published" (safe to retry) when
nothing reached the server, "outcome unknown" when the message may have been written; and
the first call after the server closed an idle connection must simply work.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from chicory import Chicory, PublishOutcomeUnknownError
from chicory.broker import OutgoingMessage
from chicory.errors import (
    BrokerAuthenticationError,
    BrokerConnectionError,
    ResultBackendAuthenticationError,
)
from chicory_redis.broker import RedisBroker
from chicory_redis.results import RedisResultBackend
from processes import RedisServer, own_redis

pytestmark = pytest.mark.slow

STREAM = "chicory:{q:default}:stream"
PASSWORD = "s3cr/t#?x@y"  # what generated passwords look like


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with own_redis(tmp_path) as running:
        yield running


def producer(url: str) -> Chicory:
    app = Chicory(url)

    @app.task(name="t.add")
    async def add(x: int, y: int) -> int: ...

    return app


def entries(server: RedisServer) -> int:
    admin = server.admin()
    try:
        return int(admin.xlen(STREAM))
    finally:
        admin.close()


async def test_the_first_publish_after_the_server_dropped_an_idle_connection_succeeds(
    server: RedisServer,
) -> None:
    app = producer(server.url)
    await app.tasks["t.add"].delay(1, 1)  # a pooled connection, then idle
    admin = server.admin()
    admin.config_set("timeout", 1)  # the server closes connections idle for a second
    await asyncio.sleep(2.5)
    await app.tasks["t.add"].delay(2, 2)
    admin.close()
    assert entries(server) == 2
    await app.close()


async def test_a_publish_after_client_kill_succeeds(server: RedisServer) -> None:
    app = producer(server.url)
    await app.tasks["t.add"].delay(1, 1)
    await asyncio.to_thread(server.kill_clients)
    await app.tasks["t.add"].delay(2, 2)
    assert entries(server) == 2
    await app.close()


async def test_idempotent_calls_after_client_kill_succeed(server: RedisServer) -> None:
    """Reads and settle scripts are repeated on a fresh connection when theirs was killed."""
    broker = RedisBroker.from_url(server.url)
    await broker.connect()
    await broker.publish("q", b"x")
    async with broker.consume(["q"], prefetch=5) as consumer:
        (delivery,) = await consumer.fetch(5, timeout=1)
        await asyncio.to_thread(server.kill_clients)
        await delivery.ack()
        await asyncio.to_thread(server.kill_clients)
        counts = await broker.counts("q")
    assert (counts.ready, counts.in_flight) == (0, 0)
    await broker.close()


async def test_a_publish_during_a_restart_waits_for_the_server(server: RedisServer) -> None:
    """Nothing was sent while the server was down, so the publish reconnects and goes on."""
    app = producer(f"{server.url}?reconnect_timeout=10&reconnect_backoff=0.05")
    await app.tasks["t.add"].delay(1, 1)
    await asyncio.to_thread(server.stop)
    restart = threading.Timer(1.0, server.start)
    restart.start()
    try:
        await app.tasks["t.add"].delay(2, 2)
    finally:
        restart.join()
    assert entries(server) == 2
    await app.close()


async def test_a_publish_to_a_stopped_server_says_nothing_was_written(
    server: RedisServer,
) -> None:
    app = producer(f"{server.url}?reconnect_timeout=0.5&reconnect_backoff=0.05")
    await app.tasks["t.add"].delay(1, 1)
    await asyncio.to_thread(server.stop)
    with pytest.raises(BrokerConnectionError) as raised:
        await app.tasks["t.add"].delay(2, 2)
    assert not isinstance(raised.value, PublishOutcomeUnknownError)
    assert "nothing was written" in str(raised.value)
    await app.close()


async def test_a_publish_to_a_hung_server_says_its_outcome_is_unknown(
    server: RedisServer,
) -> None:
    """The message was sent; the server, frozen, answered nothing before the timeout, and
    adds it when it resumes: the error must not claim it was not published."""
    app = producer(f"{server.url}?socket_timeout=2.5")
    await app.tasks["t.add"].delay(1, 1)  # a live pooled connection
    server.pause()
    try:
        with pytest.raises(PublishOutcomeUnknownError) as raised:
            await app.tasks["t.add"].delay(2, 2)
    finally:
        server.resume()
    (task_id,) = raised.value.task_ids
    message = str(raised.value)
    assert task_id in message
    assert "may or may not be enqueued" in message
    assert "may run it twice" in message
    for _ in range(100):  # the frozen server now runs the command it had received
        if entries(server) == 2:
            break
        await asyncio.sleep(0.05)
    assert entries(server) == 2
    await app.close()


async def test_delay_many_with_an_unknown_outcome_names_every_task(server: RedisServer) -> None:
    app = producer(f"{server.url}?socket_timeout=2.5")
    await app.tasks["t.add"].delay(1, 1)
    server.pause()
    try:
        with pytest.raises(PublishOutcomeUnknownError) as raised:
            await app.tasks["t.add"].delay_many([(i, i) for i in range(3)])
    finally:
        server.resume()
    assert len(raised.value.task_ids) == 3
    await app.close()


@pytest.fixture
def locked(tmp_path: Path) -> Iterator[RedisServer]:
    with own_redis(tmp_path, "--requirepass", PASSWORD) as running:
        admin = running.admin()
        admin.execute_command(
            "ACL", "SETUSER", "reader", "on", ">pw", "~*", "+@read", "+@connection"
        )
        admin.close()
        yield running


@pytest.mark.parametrize("userinfo", [":wrong", "nobody:wrong", ""])
async def test_a_refused_login_is_an_authentication_error(
    locked: RedisServer, userinfo: str
) -> None:
    url = f"redis://{userinfo}@127.0.0.1:{locked.port}/0" if userinfo else locked.url
    broker = RedisBroker.from_url(url)
    with pytest.raises(BrokerAuthenticationError) as raised:
        await broker.connect()
    message = str(raised.value)
    assert message.startswith("authentication failed for redis://")
    assert "check the password" in message
    assert "unreachable" not in message
    assert "wrong" not in message
    backend = RedisResultBackend.from_url(url)
    with pytest.raises(ResultBackendAuthenticationError):
        await backend.connect()


async def test_a_command_the_acl_refuses_is_a_permission_error(locked: RedisServer) -> None:
    app = producer(f"redis://reader:pw@127.0.0.1:{locked.port}/0")
    with pytest.raises(BrokerAuthenticationError) as raised:
        await app.tasks["t.add"].delay(1, 1)
    assert "lack of permission" in str(raised.value)
    assert "redis://reader:***@" in str(raised.value)
    await app.close()


async def test_entries_a_read_left_pending_on_a_hung_server_are_taken_back(
    server: RedisServer,
) -> None:
    """A read sent to a frozen server times out; the server runs it when it resumes,
    handing entries to this consumer that nobody saw. The consumer takes them back at
    once, not after its (one-minute) lease."""
    broker = RedisBroker.from_url(server.url, socket_timeout=2.5, lease_seconds=60)
    await broker.connect()
    async with broker.consume(["q"], prefetch=10) as consumer:
        assert await consumer.fetch(10, timeout=0.1) == []  # the group exists
        await broker.publish_many("q", [OutgoingMessage(body=b"%d" % n) for n in range(3)])
        server.pause()
        resume = threading.Timer(3.5, server.resume)
        resume.start()
        try:
            async with asyncio.timeout(20):  # a third of the lease
                found = await consumer.fetch(10, timeout=8)
                while len(found) < 3:
                    found = [*found, *await consumer.fetch(10, timeout=8)]
        finally:
            resume.join()
        assert sorted(d.body for d in found) == [b"0", b"1", b"2"]
        await consumer.ack_many(found)
    counts = await broker.counts("q")
    assert (counts.ready, counts.in_flight) == (0, 0)
    await broker.close()
