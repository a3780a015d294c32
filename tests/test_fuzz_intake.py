"""A property-based fuzzer over the whole intake: hostile entries written straight into the
broker, around good tasks, against a real worker on memory:// and on Redis.

Hostile entries: random bytes; envelopes with a field of the wrong type or out of range
(version, id, task, args, kwargs, attempt, queue, times), a required field missing, an
unknown task, nesting deeper than the encoder writes, a body over the size limit, headers
that are not text (memory://), garbage signatures (with a signing key), raw stream entries of
any shape (Redis); and well-formed messages forging another task's id.

Invariants, checked after every example:

* the worker never exits (its ``serve`` raises nothing, and it handled every entry);
* every bad entry is dead-lettered exactly once, with a reason;
* the good tasks around them complete with their results;
* the queue is left empty (nothing ready, in flight or delayed);
* no stored result of another task changes (forged ids leave the first result alone).

Bounded in the default suite (``CHICORY_FUZZ_EXAMPLES``, 25 examples per test); longer on
demand with ``./scripts/fuzz`` (2,000 per test, or its first argument).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio
import orjson
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chicory import Chicory, DeliveryMode
from chicory.envelope import SIGNATURE_HEADER, parse_aware
from chicory.wire_rules import MAX_ATTEMPT, MAX_DEPTH, MAX_ID_LENGTH
from e2e_support import eventually, serving
from processes import delete_keys

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("CHICORY_FUZZ_EXAMPLES", "25"))
LIMIT = 64 * 1024  # the worker's max_message_bytes: oversized bodies stay cheap
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- hostile entries ------------------------------------------------------------------------

Entry = tuple[str, Any]
"""``("body", (bytes, headers))``, ``("forged", args)`` or ``("fields", {bytes: bytes})``."""

_int64 = st.integers(-(2**63), 2**63 - 1)  # what orjson writes (the tests write bodies with it)
_not_aware = st.text(max_size=30).filter(lambda t: parse_aware(t) is None)
_json_scalars = st.one_of(st.none(), st.booleans(), _int64, st.text(max_size=20))
_json = st.recursive(
    _json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_bad_ids = st.one_of(
    st.just(""),
    st.text(min_size=MAX_ID_LENGTH + 1, max_size=MAX_ID_LENGTH + 40),
    st.tuples(st.text(max_size=10), st.sampled_from("\n\r\t\x00\x7f\u2028")).map("".join),
    _int64,
    st.none(),
    st.lists(_int64, max_size=2),
)
MUTATIONS: dict[str, st.SearchStrategy[Any]] = {
    "v": st.one_of(st.sampled_from([True, False, 0, 2, "1", 1.5, None]), st.integers(2, 2**63 - 1)),
    "id": _bad_ids,
    "task": st.one_of(st.just(""), _int64, st.none(), st.lists(st.text(), max_size=2)),
    "args": st.one_of(
        st.text(max_size=10),
        st.dictionaries(st.text(max_size=5), _json_scalars, max_size=3),
        _int64,
        st.none(),
        st.booleans(),
    ),
    "kwargs": st.one_of(
        st.lists(_json_scalars, max_size=3), st.text(max_size=10), _int64, st.none()
    ),
    "attempt": st.one_of(
        st.integers(min_value=-(2**63), max_value=0),
        st.integers(min_value=MAX_ATTEMPT + 1, max_value=2**63 - 1),
        st.booleans(),
        st.floats(allow_nan=False),
        st.text(max_size=5),
        st.none(),
    ),
    "queue": st.one_of(st.just(""), _int64, st.none()),
    "created_at": st.one_of(_not_aware, st.just("2026-01-01T00:00:00"), _int64),
    "eta": st.one_of(_not_aware.filter(bool), _int64, st.lists(_int64, max_size=1)),
}


def envelope(task: str = "fuzz.echo", **fields: Any) -> dict[str, Any]:
    message: dict[str, Any] = {
        "v": 1,
        "id": uuid.uuid4().hex,
        "task": task,
        "args": [1],
        "kwargs": {},
        "attempt": 1,
        "queue": "default",
        "created_at": datetime.now(UTC).isoformat(),
        "eta": None,
    }
    message.update(fields)
    return message


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """An envelope with one to three fields made wrong (or a required one missing)."""
    message = envelope()
    fields = draw(st.lists(st.sampled_from(sorted(MUTATIONS)), min_size=1, max_size=3))
    for field in fields:
        message[field] = draw(MUTATIONS[field])
    if draw(st.booleans()):
        message[draw(st.sampled_from(["pad", "extra"]))] = draw(_json)  # the careful path
    if draw(st.integers(0, 5)) == 0:
        del message[draw(st.sampled_from(["v", "id", "task", "created_at"]))]
    return orjson.dumps(message)


@st.composite
def deep(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(MAX_DEPTH - 1, 900))  # 2 levels are the envelope's own
    nest = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    inner = nest[0] * depth + b"1" + nest[1] * depth
    return orjson.dumps(envelope(args=["@"])).replace(b'"@"', inner)


bodies = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=100).map(str.encode),
    mutated(),
    deep(),
    st.builds(lambda t: orjson.dumps(envelope(task="fuzz.unknown." + t)), st.text(max_size=8)),
    st.builds(lambda n: orjson.dumps(envelope(pad="x" * (LIMIT + n))), st.integers(0, 100)),
    _json.map(orjson.dumps),
)
text_headers = st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=12), max_size=3)
odd_headers = st.dictionaries(
    st.text(min_size=1, max_size=8), st.one_of(st.integers(), st.none(), st.binary()), min_size=1
)
signatures = st.one_of(
    st.text(max_size=70),
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    st.integers(),
)


def memory_entries(signed: bool) -> st.SearchStrategy[Entry]:
    if signed:  # anything unsigned or signed wrongly, however well-formed
        return st.tuples(st.one_of(bodies, st.just(orjson.dumps(envelope()))), signatures).map(
            lambda pair: ("body", (pair[0], {SIGNATURE_HEADER: pair[1]}))
        )
    return st.one_of(
        st.tuples(bodies, text_headers).map(lambda pair: ("body", pair)),
        st.tuples(st.just(orjson.dumps(envelope())), odd_headers).map(lambda pair: ("body", pair)),
        _json.map(lambda args: ("forged", args)),
    )


redis_entries: st.SearchStrategy[Entry] = st.one_of(
    st.tuples(bodies, text_headers).map(lambda pair: ("body", pair)),
    st.dictionaries(
        st.binary(min_size=1, max_size=6).filter(lambda k: k != b"m"),
        st.binary(max_size=40),
        min_size=1,
        max_size=4,
    ).map(lambda fields: ("fields", fields)),
    st.binary(max_size=80).map(lambda packed: ("fields", {b"m": packed})),
    _json.map(lambda args: ("forged", args)),
)

# -- one example: a worker against a batch of hostile entries -------------------------------


def fuzz_app(url: str, signed: bool) -> Chicory:
    app = Chicory(url, max_message_bytes=LIMIT, signing_key="fuzz-key" if signed else None)

    @app.task(name="fuzz.echo", delivery_mode=DeliveryMode.AT_LEAST_ONCE)
    async def echo(*args: Any, **kwargs: Any) -> Any:
        return [list(args), kwargs]

    @app.task(name="fuzz.amo", delivery_mode=DeliveryMode.AT_MOST_ONCE)
    async def amo(n: int) -> int:
        return n

    return app


async def run_example(url: str, entries: list[Entry], signed: bool = False) -> None:
    app = fuzz_app(url, signed)
    broker = await app.connected_broker()
    backend = await app.connected_backend()
    raw = aioredis.from_url(url.split("?")[0]) if url.startswith("redis") else None
    stream = getattr(broker, "keys", None)
    bad = 0
    try:
        async with serving(app, concurrency=4, fetch_timeout=0.02) as worker:
            victim = await app.tasks["fuzz.echo"].delay("victim")
            kept = [["victim"], {}]
            assert await victim.get(timeout=10) == kept
            before = await backend.get(victim.id)
            goods = []
            for index, (kind, value) in enumerate(entries):
                if kind == "body":
                    body, headers = value
                    await broker.publish("default", body, headers)
                    bad += 1
                elif kind == "fields":
                    assert raw is not None
                    assert stream is not None
                    await raw.xadd(stream.queue("default").stream, value)
                    bad += 1
                else:  # a well-formed message forging the victim's id: runs, changes nothing
                    forged = orjson.dumps(envelope(id=victim.id, args=[value]))
                    await broker.publish("default", forged, {})
                task = app.tasks["fuzz.amo" if index % 2 else "fuzz.echo"]
                goods.append((await task.delay(index), index))
            for result, index in goods:
                expected = index if index % 2 else [[index], {}]
                assert await result.get(timeout=15) == expected
            forged_count = sum(kind == "forged" for kind, _ in entries)

            async def settled() -> bool:
                counts = await broker.counts("default")
                return (counts.ready, counts.in_flight, counts.delayed, counts.dead) == (
                    0,
                    0,
                    0,
                    bad,
                ) and worker.processed == 1 + len(entries) + len(goods)

            await eventually(settled, timeout=15)
            assert forged_count + bad == len(entries)
            letters = await broker.dead_letters("default", limit=1000)
            assert len(letters) == bad, "every bad entry is dead-lettered exactly once"
            assert all(letter.reason.strip() for letter in letters), "each with a reason"
            assert await backend.get(victim.id) == before, "a stored result changed"
            assert not worker.stopping, "the worker stopped"
    finally:
        if raw is not None:
            await raw.aclose()
        await app.close()


def run(example: Callable[[], Any]) -> None:
    anyio.run(example)


@FUZZ
@given(entries=st.lists(memory_entries(signed=False), min_size=1, max_size=8))
def test_fuzz_memory(entries: list[Entry]) -> None:
    run(lambda: run_example("memory://", entries))


@FUZZ
@given(entries=st.lists(memory_entries(signed=True), min_size=1, max_size=6))
def test_fuzz_memory_signed(entries: list[Entry]) -> None:
    run(lambda: run_example("memory://", entries, signed=True))


@FUZZ
@given(entries=st.lists(redis_entries, min_size=1, max_size=8))
def test_fuzz_redis(entries: list[Entry]) -> None:
    prefix = f"chicory-test-fuzz-{uuid.uuid4().hex[:8]}"
    try:
        run(lambda: run_example(f"redis://127.0.0.1:6379/0?key_prefix={prefix}", entries))
    finally:
        delete_keys(prefix)
