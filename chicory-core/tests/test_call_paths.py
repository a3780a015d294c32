"""``delay()`` takes a shorter path than ``apply_async()`` when it can; the messages it
publishes must be the very bytes ``apply_async(args, kwargs)`` publishes, whatever the
task's and the app's options."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import attrs
import pytest

import chicory.task
from chicory import Chicory
from chicory.broker import Delivery, OutgoingMessage, outgoing_message
from chicory.middleware import Middleware, OutgoingTask

AT = datetime(2026, 5, 17, 8, 30, 1, 250000, tzinfo=UTC)


@attrs.frozen
class Point:
    x: int
    y: int


class Stamp(Middleware):
    """A publish middleware adding a header."""

    def before_publish(self, message: OutgoingTask) -> None:
        message.headers["x-stamp"] = message.task


@pytest.fixture(autouse=True)
def fixed_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chicory.task, "new_task_id", lambda: "0123456789abcdef" * 2)


APPS: dict[str, dict[str, Any]] = {
    "plain": {},
    "signed": {"signing_key": "k" * 32},
    "middleware": {"middleware": [Stamp()]},
    "signed-middleware": {"signing_key": "k" * 32, "middleware": [Stamp()]},
    "small-limit": {"max_message_bytes": 4096},
}
TASKS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "queue": {"queue": "other"},
    "priority": {"priority": 7},
    "time-limits": {"timeout": 30.0, "soft_timeout": 10.0},
    "no-result": {"ignore_result": True},
}
CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((1, 2), {}),
    ((1,), {"y": 2}),
    ((), {"x": -5, "y": 2**62}),
    (("null", None), {}),  # texts that look like the envelope's own nulls
    (({"é": [1.5, True, None]}, ["a", "☃"]), {}),
    ((Point(1, 2), [Point(3, 4)]), {}),
]


async def published(app: Chicory, queue: str) -> Delivery:
    consumer = (await app.connected_broker()).consume([queue], prefetch=1)
    try:
        (delivery,) = await consumer.fetch(1, timeout=5)
        await consumer.ack_many([delivery])
    finally:
        await consumer.close()
    return delivery


@pytest.mark.parametrize("app_options", APPS.values(), ids=APPS.keys())
@pytest.mark.parametrize("task_options", TASKS.values(), ids=TASKS.keys())
@pytest.mark.parametrize("call", CALLS, ids=lambda call: repr(call)[:40])
async def test_delay_publishes_the_bytes_apply_async_does(
    app_options: dict[str, Any],
    task_options: dict[str, Any],
    call: tuple[tuple[Any, ...], dict[str, Any]],
) -> None:
    app = Chicory("memory://", **app_options)
    app.utcnow = lambda: AT

    @app.task(name="t.anything", **task_options)
    async def anything(x: Any, y: Any) -> Any:
        return None

    queue = task_options.get("queue", "default")
    args, kwargs = call
    try:
        fast = await anything.delay(*args, **kwargs)
        by_fast = await published(app, queue)
        slow = await anything.apply_async(args, kwargs)
        by_slow = await published(app, queue)
        assert fast.id == slow.id
        assert by_fast.body == by_slow.body
        assert dict(by_fast.headers) == dict(by_slow.headers)
        assert app.codec.decode(by_fast.body, by_fast.headers).created_at == AT
    finally:
        await app.close()


BAD_CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    ((1, 2**64), {}),  # over JSON's integers as orjson writes them
    ((float("nan"), 1), {}),
    ((AT, 1), {}),  # a datetime argument
    ((1,), {}),  # a missing argument
    ((1, 2, 3), {}),
    ((1,), {"z": 2}),
    (("x" * 5000, 1), {}),  # over max_message_bytes below
]


@pytest.mark.parametrize("app_options", APPS.values(), ids=APPS.keys())
@pytest.mark.parametrize("call", BAD_CALLS, ids=lambda call: repr(call)[:40])
async def test_delay_refuses_what_apply_async_refuses(
    app_options: dict[str, Any], call: tuple[tuple[Any, ...], dict[str, Any]]
) -> None:
    app = Chicory("memory://", **{"max_message_bytes": 4096, **app_options})

    @app.task(name="t.anything")
    async def anything(x: Any, y: Any) -> Any:
        return None

    args, kwargs = call
    try:
        with pytest.raises(Exception) as by_fast:
            await anything.delay(*args, **kwargs)
        with pytest.raises(Exception) as by_slow:
            await anything.apply_async(args, kwargs)
        assert type(by_fast.value) is type(by_slow.value)
        assert str(by_fast.value) == str(by_slow.value)
        assert (await (await app.connected_broker()).counts("default")).ready == 0
    finally:
        await app.close()


@pytest.mark.parametrize(
    ("body", "headers", "not_before"),
    [(b"x", {}, None), (b"", {"a": "b", "chicory-sig": "s"}, AT), (b"\x00" * 100, {"k": ""}, None)],
)
def test_outgoing_message_builds_the_message_the_constructor_builds(
    body: bytes, headers: dict[str, str], not_before: datetime | None
) -> None:
    fast = outgoing_message(body, headers, not_before)
    assert fast == OutgoingMessage(body=body, headers=headers, not_before=not_before)
    assert type(fast) is OutgoingMessage
    assert (fast.body, fast.headers, fast.not_before) == (body, headers, not_before)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        fast.body = b"changed"  # type: ignore[misc]


def test_outgoing_message_fills_every_field() -> None:
    """A field added to OutgoingMessage must be filled by outgoing_message too."""
    assert [field.name for field in attrs.fields(OutgoingMessage)] == [
        "body",
        "headers",
        "not_before",
    ]
