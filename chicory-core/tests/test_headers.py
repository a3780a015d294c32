"""Message headers (chicory.headers): set by producers, read by tasks, kept through retries,
dead letters and replays, and covered by the signature."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from chicory import Chicory, RetryPolicy, TaskContext, TaskFailedError, Worker
from chicory.errors import InvalidHeaderError
from chicory.headers import MAX_HEADERS_BYTES, check_headers, user_headers
from e2e_support import eventually

KEY = "test-signing-key"


@asynccontextmanager
async def serving(app: Chicory) -> AsyncIterator[Worker]:
    worker = Worker(app, heartbeat_interval=0, fetch_timeout=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(worker.serve)
        await worker.wait_started()
        try:
            yield worker
        finally:
            worker.stop()


@pytest.mark.parametrize(
    ("headers", "complaint"),
    [
        ({"chicory-history": "x"}, "reserved"),
        ({"Chicory-Trace": "x"}, "reserved"),
        ({"": "x"}, "not allowed"),
        ({"has space": "x"}, "not allowed"),
        ({"-leading": "x"}, "not allowed"),
        ({"n" * 129: "x"}, "characters long"),
        ({"count": 3}, "must be a string"),
        ({"big": "v" * MAX_HEADERS_BYTES}, "over the limit"),
        ({"broken": "\ud800"}, "not valid Unicode"),
    ],
)
def test_bad_headers_are_refused_with_a_reason(headers: dict[Any, Any], complaint: str) -> None:
    with pytest.raises(InvalidHeaderError, match=complaint):
        check_headers(headers)


def test_good_headers_pass() -> None:
    headers = {"traceparent": "00-abc-def-01", "x-tenant.id_2": "acme ✓", "empty": ""}
    assert check_headers(headers) == headers


async def test_invalid_headers_enqueue_nothing() -> None:
    app = Chicory(broker="memory://", backend="memory://")

    @app.task(name="h.noop")
    async def noop() -> None:
        return None

    with pytest.raises(InvalidHeaderError):
        await noop.apply_async(headers={"chicory-sig": "x"})
    with pytest.raises(InvalidHeaderError):
        await noop.delay_many([(), ()], headers={"n": 1})  # type: ignore[dict-item]
    assert (await (await app.connected_broker()).counts("default")).ready == 0
    await app.close()


async def test_headers_travel_through_retries_dead_letters_and_replay() -> None:
    app = Chicory(
        broker="memory://",
        backend="memory://",
        signing_key=KEY,
        retry_policy=RetryPolicy(max_retries=1, delay=0),
    )
    seen: list[tuple[int, dict[str, str]]] = []
    replayed = anyio.Event()

    @app.task(name="h.doomed")
    async def doomed(ctx: TaskContext) -> str:
        seen.append((ctx.attempt, user_headers(ctx.headers)))  # Chicory's own left out
        if len(seen) == 3:
            replayed.set()
            return "ran after replay"
        raise ConnectionError("down")

    trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = {"tenant": "acme", "traceparent": trace}
    broker = await app.connected_broker()
    async with serving(app):
        result = await doomed.apply_async(headers=headers)
        with pytest.raises(TaskFailedError):
            await result.get(timeout=10)
        (letter,) = await broker.dead_letters("default")
        assert {k: letter.headers[k] for k in headers} == headers
        assert await broker.replay_dead_letter("default", letter.id)
        with anyio.fail_after(10):
            await replayed.wait()
    await app.close()
    assert seen == [(1, headers), (2, headers), (2, headers)]


async def test_the_signature_covers_user_headers() -> None:
    app = Chicory(broker="memory://", backend="memory://", signing_key=KEY)
    ran: list[str] = []

    @app.task(name="h.trusting")
    async def trusting(ctx: TaskContext) -> None:
        ran.append(ctx.headers["tenant"])

    body, sent = app.codec.encode(trusting.message(), {"tenant": "acme"})
    broker = await app.connected_broker()
    await broker.publish("default", body, {**sent, "tenant": "evil"})  # altered on the way
    await broker.publish("default", body, {k: v for k, v in sent.items() if k != "tenant"})
    await broker.publish("default", body, sent)  # as signed
    async with serving(app) as worker:
        await eventually(lambda: worker.processed == 3)
    letters = await broker.dead_letters("default")
    await app.close()
    assert ran == ["acme"]
    assert len(letters) == 2
    assert all("signature" in letter.reason for letter in letters)


async def test_reserved_headers_are_not_signed() -> None:
    """A tool that adds to Chicory's own headers (a replay's history) keeps a message valid."""
    app = Chicory(broker="memory://", backend="memory://", signing_key=KEY)
    ran: list[str] = []

    @app.task(name="h.signed")
    async def signed(ctx: TaskContext) -> None:
        ran.append(ctx.headers["chicory-history"])

    body, sent = app.codec.encode(signed.message(), {"tenant": "acme"})
    await (await app.connected_broker()).publish("default", body, {**sent, "chicory-history": "[]"})
    async with serving(app) as worker:
        await eventually(lambda: worker.processed == 1)
    await app.close()
    assert ran == ["[]"]


def test_messages_without_user_headers_keep_the_body_only_signature() -> None:
    """A message with no headers of its own is signed over its body alone, as before
    headers were signed: messages already on a broker still verify."""
    app = Chicory(broker="memory://", backend="memory://", signing_key=KEY)

    @app.task(name="h.plain")
    async def plain() -> None:
        return None

    body, headers = app.codec.encode(plain.message())
    assert headers == {"chicory-sig": hmac.new(KEY.encode(), body, hashlib.sha256).hexdigest()}


async def test_headers_go_with_a_calls_time_limit() -> None:
    app = Chicory(broker="memory://", backend="memory://", signing_key=KEY)

    @app.task(name="h.limited")
    async def limited(ctx: TaskContext) -> dict[str, str]:
        return dict(ctx.headers)

    async with serving(app):
        result = await limited.apply_async(headers={"tenant": "acme"}, timeout=5)
        seen = await result.get(timeout=10)
    await app.close()
    assert seen["tenant"] == "acme"
    assert float(seen["chicory-timeout"]) == 5.0
