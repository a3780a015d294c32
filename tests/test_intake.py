"""No message stops a worker: whatever fails between a delivery and its settle ends in one
dead letter with a reason; malformed envelopes are refused, not coerced; a final result is
written once. On memory:// and on Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from chicory import Chicory, DeliveryMode, RetryPolicy, TaskFailedError
from chicory.broker import DeadLetter
from chicory.envelope import SIGNATURE_HEADER
from chicory.records import TaskState
from chicory.result import AsyncResult
from e2e_support import eventually, serving
from processes import delete_keys

MODES = pytest.mark.parametrize(
    "mode", [DeliveryMode.AT_MOST_ONCE, DeliveryMode.AT_LEAST_ONCE], ids=["amo", "alo"]
)


@pytest.fixture(params=["memory", "redis"])
async def url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "memory":
        yield "memory://"
        return
    prefix = f"chicory-test-intake-{uuid.uuid4().hex[:8]}"
    yield f"redis://127.0.0.1:6379/0?key_prefix={prefix}"
    delete_keys(prefix)


def letter_id(letter: DeadLetter) -> str:
    """The task id in a dead letter's body."""
    return str(orjson.loads(letter.body)["id"])


def body_of(**fields: Any) -> bytes:
    envelope: dict[str, Any] = {
        "v": 1,
        "id": uuid.uuid4().hex,
        "task": "t.fail_once",
        "args": [],
        "kwargs": {},
        "attempt": 1,
        "queue": "default",
        "created_at": datetime.now(UTC).isoformat(),
        "eta": None,
    }
    envelope.update(fields)
    return orjson.dumps(envelope)


def deep_body(task_id: str, depth: int) -> bytes:
    """An envelope whose argument nests ``depth`` arrays (no encoder writes one this deep)."""
    return body_of(id=task_id, args=["@"]).replace(
        b'["@"]', b"[%s1%s]" % (b"[" * depth, b"]" * depth)
    )


def app_with_tasks(url: str | Chicory, mode: DeliveryMode, **options: Any) -> Chicory:
    """An app with the tasks below, on ``url`` or on the broker and backend of another."""
    if isinstance(url, Chicory):
        app = Chicory(url.broker, url.backend, **options)
    else:
        app = Chicory(url, **options)

    @app.task(
        name="t.fail_once",
        delivery_mode=mode,
        retry_policy=RetryPolicy(max_retries=20, delay=0),
    )
    async def fail_once(*args: Any) -> int:
        raise RuntimeError("fails, so it is retried")

    @app.task(name="t.ok", delivery_mode=mode)
    async def ok(n: int) -> int:
        return n

    return app


@MODES
async def test_a_message_that_cannot_be_retried_is_dead_lettered_not_fatal(
    url: str, mode: DeliveryMode
) -> None:
    """Arguments nested 300 deep (JSON reads deeper than it writes) and a 2 MiB message
    from a producer allowing more than the worker: each was a crash loop on retry."""
    worker_app = app_with_tasks(url, mode)
    producer = app_with_tasks(worker_app, mode, max_message_bytes=4 * 1024 * 1024)
    broker = await worker_app.connected_broker()
    await broker.publish("default", deep_body("deep", 300), {})
    big = await producer.tasks["t.fail_once"].delay("x" * (2 * 1024 * 1024))
    goods = await producer.tasks["t.ok"].delay_many([(n,) for n in range(10)])
    async with serving(worker_app) as worker:
        assert [await r.get(timeout=10) for r in goods] == list(range(10))
        await eventually(lambda: worker.processed == 12, timeout=10)
        assert not worker.stopping
    letters = await broker.dead_letters("default")
    reasons = sorted(letter.reason for letter in letters)
    assert len(reasons) == 2, reasons
    assert any("more than 254 levels" in r for r in reasons), reasons
    assert any("over this worker's max_message_bytes" in r for r in reasons), reasons
    assert {"deep", big.id} == {letter_id(letter) for letter in letters}
    counts = await broker.counts("default")
    assert (counts.ready, counts.in_flight, counts.delayed) == (0, 0, 0)
    await worker_app.close()


@MODES
async def test_a_retry_over_the_size_limit_fails_the_task_with_both_reasons(
    url: str, mode: DeliveryMode
) -> None:
    """A message exactly at the limit whose retry is one byte longer (attempt 9 -> 10)."""
    app = app_with_tasks(url, mode)
    limit = app.codec.max_message_bytes
    padding = limit - len(body_of(args=[""], attempt=9, id="at-limit"))
    body = body_of(args=["x" * padding], attempt=9, id="at-limit")
    assert len(body) == limit
    broker = await app.connected_broker()
    await broker.publish("default", body, {})
    async with serving(app) as worker:
        with pytest.raises(TaskFailedError, match="cannot be encoded on this worker"):
            await AsyncResult(app, "at-limit").get(timeout=10)
        assert await (await app.tasks["t.ok"].delay(1)).get(timeout=10) == 1
        assert not worker.stopping
    (letter,) = await broker.dead_letters("default")
    assert "RuntimeError: fails, so it is retried" in letter.reason
    assert "MessageTooLargeError" in letter.reason
    await app.close()


class ExplodingPolicy(RetryPolicy):
    """A retry policy with a bug: every delay it computes raises."""

    def delay_for(self, retry_number: int, rand: Any = None) -> float:
        raise ZeroDivisionError("a bug in a retry policy")


@MODES
async def test_any_error_on_the_way_to_a_settle_is_one_dead_letter(
    url: str, mode: DeliveryMode
) -> None:
    """Not only the known triggers: an error nobody foresaw (here in a user's retry policy)
    between the run and the settle dead-letters the message; the worker goes on."""
    app = Chicory(url)

    @app.task(name="t.buggy_policy", delivery_mode=mode, retry_policy=ExplodingPolicy())
    async def buggy() -> None:
        raise RuntimeError("first failure")

    @app.task(name="t.ok", delivery_mode=mode)
    async def ok(n: int) -> int:
        return n

    broken = await buggy.delay()
    broker = await app.connected_broker()
    async with serving(app) as worker:
        await eventually(lambda: worker.processed == 1, timeout=10)
        assert await (await ok.delay(5)).get(timeout=10) == 5
        assert not worker.stopping
    (letter,) = await broker.dead_letters("default")
    assert letter_id(letter) == broken.id
    assert "internal error" in letter.reason
    assert "ZeroDivisionError" in letter.reason
    await app.close()


async def test_a_garbage_signature_is_dead_lettered_and_the_worker_goes_on(url: str) -> None:
    app = app_with_tasks(url, DeliveryMode.AT_LEAST_ONCE, signing_key="k")
    broker = await app.connected_broker()
    for signature in ("é" * 64, "\x00", "", "f" * 64):
        await broker.publish(
            "default", body_of(task="t.ok", args=[1]), {SIGNATURE_HEADER: signature}
        )
    async with serving(app) as worker:
        assert await (await app.tasks["t.ok"].delay(2)).get(timeout=10) == 2
        await eventually(lambda: worker.processed == 5, timeout=10)
    letters = await broker.dead_letters("default")
    assert len(letters) == 4
    assert all("signature" in letter.reason for letter in letters)
    await app.close()


async def test_a_message_claiming_another_tasks_id_leaves_its_result_alone(url: str) -> None:
    """The first final result is kept: a forged (or redelivered) message for the same task
    id runs, but its result does not replace the stored one."""
    app = app_with_tasks(url, DeliveryMode.AT_LEAST_ONCE)
    ok = app.tasks["t.ok"]
    async with serving(app):
        original = await ok.delay(1)
        assert await original.get(timeout=10) == 1
        backend = await app.connected_backend()
        before = await backend.get(original.id)
        broker = await app.connected_broker()
        for forged in (
            body_of(id=original.id, task="t.ok", args=[666]),
            body_of(id=original.id, task="t.fail_once", attempt=21),
        ):
            await broker.publish("default", forged, {})
        await eventually(lambda: _dead_or_done(app), timeout=10)
        assert await (await ok.delay(3)).get(timeout=10) == 3
    assert await backend.get(original.id) == before
    info = await original.info()
    assert info is not None
    assert (info.state, info.result) == (TaskState.SUCCESS, 1)
    await app.close()


async def _dead_or_done(app: Chicory) -> bool:
    counts = await (await app.connected_broker()).counts("default")
    return counts.ready == 0 and counts.in_flight == 0 and counts.delayed == 0


async def test_envelopes_are_checked_not_coerced(url: str) -> None:
    app = app_with_tasks(url, DeliveryMode.AT_LEAST_ONCE)
    ran: list[object] = []

    @app.task(name="t.record", retry_policy=RetryPolicy(max_retries=2, delay=0))
    async def record(*args: Any) -> None:
        ran.append(args)
        raise RuntimeError("again")

    broker = await app.connected_broker()
    bad = [
        body_of(task="t.record", args="ab"),
        body_of(task="t.record", args={"x": 1}),
        body_of(task="t.record", v=True),
        body_of(task="t.record", attempt=-5),
    ]
    for body in bad:
        await broker.publish("default", body, {})
    async with serving(app) as worker:
        await eventually(lambda: worker.processed == 4, timeout=10)
        assert await (await app.tasks["t.ok"].delay(1)).get(timeout=10) == 1
    assert ran == []
    reasons = sorted(letter.reason for letter in await broker.dead_letters("default"))
    assert len(reasons) == 4
    assert sum("$.args" in r for r in reasons) == 2
    assert sum("$.attempt" in r for r in reasons) == 1
    assert sum("envelope version True" in r for r in reasons) == 1
    await app.close()


@pytest.mark.parametrize("countdown", [float("nan"), float("inf"), -float("inf"), 1e12])
async def test_absurd_countdowns_are_refused_clearly(countdown: float) -> None:
    app = app_with_tasks("memory://", DeliveryMode.AT_LEAST_ONCE)
    with pytest.raises(ValueError, match="countdown"):
        await app.tasks["t.ok"].apply_async((1,), countdown=countdown)
    far = datetime.now(UTC) + timedelta(days=365 * 200)
    with pytest.raises(ValueError, match="days ahead"):
        await app.tasks["t.ok"].apply_async((1,), eta=far)
    await app.close()


async def test_producers_refuse_what_json_cannot_say() -> None:
    app = app_with_tasks("memory://", DeliveryMode.AT_LEAST_ONCE)
    task = app.tasks["t.fail_once"]
    with pytest.raises(ValueError, match="NaN or infinite"):
        await task.delay(float("nan"))
    with pytest.raises(TypeError, match="not JSON-encodable"):
        await task.delay(datetime.now(UTC))
    with pytest.raises(ValueError, match="task_id"):
        await task.apply_async((), task_id="a\nb")
    with pytest.raises(ValueError, match="task_id"):
        await task.apply_async((), task_id="x" * 256)
    counts = await (await app.connected_broker()).counts("default")
    assert counts.ready == 0
    await app.close()
