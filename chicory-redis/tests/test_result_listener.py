"""The result listener's connection: bulk reads, and a connection that falls silent.

A silent connection is simulated with a loopback relay in front of the test Redis that can
stop passing bytes on one connection (both ways) without closing it, as a dropped network
path would: no error ever reaches the client.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import pytest

from chicory_redis.results import RedisResultBackend
from chicory_redis.waiters import INLINE_MAX, raw_stream

BackendFactory = Callable[..., Awaitable[RedisResultBackend]]


class _Link:
    """One relayed connection; ``silent`` drops whatever it would pass on."""

    def __init__(self) -> None:
        self.silent = False
        self.subscriber = False


class Relay:
    """A loopback TCP relay to the test Redis."""

    def __init__(self, redis_url: str) -> None:
        target = urlsplit(redis_url)
        self._target = (target.hostname or "127.0.0.1", target.port or 6379)
        self.links: list[_Link] = []
        self.subscribed = asyncio.Event()  # a SUBSCRIBE was confirmed to its client
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._relay(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        link = _Link()
        self.links.append(link)
        up_reader, up_writer = await asyncio.open_connection(*self._target)

        async def pump(
            src: asyncio.StreamReader, dst: asyncio.StreamWriter, upstream: bool
        ) -> None:
            while data := await src.read(1 << 16):
                if upstream and b"SUBSCRIBE" in data.upper():
                    link.subscriber = True
                if not link.silent:
                    dst.write(data)
                    await dst.drain()
                    if not upstream and link.subscriber and b"subscribe" in data:
                        self.subscribed.set()
            dst.close()

        try:
            await asyncio.gather(pump(reader, up_writer, True), pump(up_reader, writer, False))
        finally:
            writer.close()
            up_writer.close()


@pytest.fixture
async def relay(redis_url: str) -> AsyncIterator[Relay]:
    async with Relay(redis_url) as running:
        yield running


async def test_the_installed_redis_py_lets_the_listener_read_in_bulk(
    backend: RedisResultBackend,
) -> None:
    """If a redis-py upgrade hides the connection's byte stream, this says so (the
    listener would still work, through ``PubSub``, only slower)."""
    pubsub = backend.client.pubsub()
    try:
        await pubsub.subscribe("chicory-test-bulk")
        assert raw_stream(pubsub) is not None
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]


async def test_many_notifications_in_one_read_wake_their_waiters(
    make_backend: BackendFactory,
) -> None:
    waiter, writer = await make_backend(), await make_backend()
    waiting = [asyncio.create_task(waiter.wait(f"t{i}", timeout=10)) for i in range(500)]
    await asyncio.sleep(0.1)
    pipe = writer.client.pipeline(transaction=False)
    channel = writer.keys.result_channel
    for i in range(500):  # one write: the listener gets them in few reads
        task_id = f"t{i}"
        pipe.publish(channel, f"{len(task_id)}:{task_id}F{i}".encode())
    await pipe.execute()
    assert await asyncio.gather(*waiting) == [str(i).encode() for i in range(500)]


async def test_notifications_of_every_size_in_one_read_wake_their_waiters(
    make_backend: BackendFactory,
) -> None:
    """Records up to the largest announced with their notification, written at once, so
    that replies straddle every boundary the listener parses its reads at."""
    waiter, writer = await make_backend(), await make_backend()
    sizes = [1, 700, 4095, 4096, 4097, 5000, INLINE_MAX]
    records = [bytes([65 + i % 26]) * sizes[i % len(sizes)] for i in range(140)]
    waiting = [asyncio.create_task(waiter.wait(f"t{i}", timeout=10)) for i in range(140)]
    await asyncio.sleep(0.1)
    pipe = writer.client.pipeline(transaction=False)
    channel = writer.keys.result_channel
    for i, record in enumerate(records):
        task_id = f"t{i}"
        pipe.publish(channel, f"{len(task_id)}:{task_id}F".encode() + record)
    await pipe.execute()
    assert await asyncio.gather(*waiting) == records


async def test_a_listener_connection_that_falls_silent_is_replaced(
    relay: Relay, make_backend: BackendFactory, prefix: str, redis_url: str
) -> None:
    """No error, no bytes: after ``health_check_interval`` of silence the listener pings,
    hears nothing, reconnects and reads again what its waiters wait for."""
    db = urlsplit(redis_url).path.lstrip("/") or "0"
    waiter = RedisResultBackend.from_url(
        f"redis://127.0.0.1:{relay.port}/{db}",
        key_prefix=prefix,
        health_check_interval=1,
        reconnect_backoff=0.1,
    )
    await waiter.connect()
    writer = await make_backend()
    try:
        waiting = asyncio.create_task(waiter.wait("t1", timeout=20))
        await asyncio.wait_for(relay.subscribed.wait(), 5)
        await asyncio.sleep(0.2)  # the listener's checks of "t1" are done: it must listen
        [listener] = [link for link in relay.links if link.subscriber]
        listener.silent = True
        await writer.store("t1", b"written into the silence", final=True, ttl=60)
        async with asyncio.timeout(10):  # about 2 s: 1 s to the PING, 1 s without a reply
            assert await waiting == b"written into the silence"
        assert sum(link.subscriber for link in relay.links) == 2
    finally:
        await waiter.close()
