"""Single ``delay()`` calls made at once share one publish; each caller keeps its own outcome."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import pytest

from chicory import Chicory
from chicory.broker import OutgoingMessage
from chicory.errors import BrokerConnectionError, MessageTooLargeError
from chicory_memory import MemoryBroker
from processes import delete_keys


class CountingBroker:
    """A memory broker that counts publish calls (and can be told to fail them)."""

    def __init__(self, **options: Any) -> None:
        self.inner = MemoryBroker(**options)
        self.calls: list[tuple[str, int]] = []
        self.fail_with: Exception | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def publish(
        self,
        queue: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        not_before: datetime | None = None,
    ) -> str:
        self.calls.append((queue, 1))
        if self.fail_with is not None:
            raise self.fail_with
        return await self.inner.publish(queue, body, headers, not_before=not_before)

    async def publish_many(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        self.calls.append((queue, len(messages)))
        if self.fail_with is not None:
            raise self.fail_with
        return await self.inner.publish_many(queue, messages)


def counting_app(**options: Any) -> tuple[Chicory, CountingBroker]:
    broker = CountingBroker(**options)
    app = Chicory(broker=broker, backend="memory://")  # type: ignore[arg-type]

    @app.task(name="p.echo")
    async def echo(text: str) -> str:
        return text

    @app.task(name="p.other", queue="other")
    async def other(n: int) -> int:
        return n

    return app, broker


async def test_concurrent_single_calls_share_one_publish_per_queue() -> None:
    app, broker = counting_app()
    echo, other = app.tasks["p.echo"], app.tasks["p.other"]
    results = await asyncio.gather(
        *(echo.delay(f"m{i}") for i in range(50)), *(other.delay(i) for i in range(7))
    )
    assert len({r.id for r in results}) == 57
    assert sorted(broker.calls) == [("default", 50), ("other", 7)]
    assert (await broker.inner.counts("default")).ready == 50
    await app.close()


async def test_a_lone_call_is_one_plain_publish_and_later_calls_batch_anew() -> None:
    app, broker = counting_app()
    echo = app.tasks["p.echo"]
    await echo.delay("alone")
    await asyncio.gather(echo.delay("a"), echo.delay("b"))
    await echo.delay("alone again")
    assert broker.calls == [("default", 1), ("default", 2), ("default", 1)]
    await app.close()


async def test_one_refused_message_fails_only_its_own_caller() -> None:
    """The broker refuses one body of the batch: the batch is sent one by one, so the other
    callers' messages are enqueued and only the oversized call raises."""
    app, broker = counting_app(max_body_bytes=2000)
    echo = app.tasks["p.echo"]
    outcomes = await asyncio.gather(
        echo.delay("small"), echo.delay("x" * 5000), echo.delay("tiny"), return_exceptions=True
    )
    assert isinstance(outcomes[1], MessageTooLargeError)
    assert not isinstance(outcomes[0], BaseException)
    assert not isinstance(outcomes[2], BaseException)
    assert (await broker.inner.counts("default")).ready == 2
    await app.close()


async def test_a_broker_error_reaches_every_caller_of_the_batch() -> None:
    app, broker = counting_app()
    echo = app.tasks["p.echo"]
    broker.fail_with = BrokerConnectionError("simulated outage")
    outcomes = await asyncio.gather(*(echo.delay(str(i)) for i in range(5)), return_exceptions=True)
    assert all(isinstance(o, BrokerConnectionError) for o in outcomes)
    assert broker.calls == [("default", 5)]
    await app.close()


async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    app, broker = counting_app()
    echo = app.tasks["p.echo"]
    calls = [asyncio.ensure_future(echo.delay(str(i))) for i in range(10)]
    await asyncio.sleep(0)  # every call has joined the batch
    calls[3].cancel()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[3], asyncio.CancelledError)
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 9
    assert broker.calls == [("default", 10)]  # its message went out with the batch
    await app.close()


async def test_a_first_caller_cancelled_in_its_yield_still_sends_the_others() -> None:
    """The call that opened the batch is cancelled while the others join: theirs go out."""
    app, broker = counting_app()
    echo = app.tasks["p.echo"]
    calls = [asyncio.ensure_future(echo.delay(str(i))) for i in range(5)]
    await asyncio.sleep(0)  # the first call yields; the other four join its batch
    calls[0].cancel()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(outcomes[0], asyncio.CancelledError)
    assert all(not isinstance(o, BaseException) for o in outcomes[1:])
    assert (await broker.inner.counts("default")).ready >= 4
    assert len(broker.calls) == 1
    await app.close()


async def test_close_sends_what_was_collected_first() -> None:
    app, broker = counting_app()
    echo = app.tasks["p.echo"]
    pending = [asyncio.ensure_future(echo.delay(str(i))) for i in range(3)]
    await asyncio.sleep(0)
    await app.close()
    await asyncio.gather(*pending)
    assert broker.calls == [("default", 3)]


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"t-producer-{uuid.uuid4().hex[:8]}"
    yield name
    delete_keys(name)


async def test_concurrent_calls_on_redis_are_all_enqueued_in_order(prefix: str) -> None:
    app = Chicory(f"redis://127.0.0.1:6379/0?key_prefix={prefix}")

    @app.task(name="p.n")
    async def n(i: int) -> int:
        return i

    results = await asyncio.gather(*(n.delay(i) for i in range(2500)))
    broker = await app.connected_broker()
    assert (await broker.counts("default")).ready == 2500
    async with broker.consume(["default"], prefetch=3000) as consumer:
        got: list[Any] = []
        while len(got) < 2500:
            got += await consumer.fetch(3000, 1.0)
        ids = [app.codec.decode(d.body, d.headers).id for d in got]
        await consumer.ack_many(got)
    assert ids == [r.id for r in results]  # one batch keeps the callers' order
    await app.close()
