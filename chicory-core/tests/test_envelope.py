"""The wire format: versioned JSON, aware-UTC datetimes, size limit, signatures, no pickle."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta, timezone

import attrs
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chicory.codec import Codec
from chicory.envelope import SIGNATURE_HEADER, TaskMessage, isoformat, to_json
from chicory.errors import MessageDecodeError, MessageTooLargeError

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def message(**overrides: object) -> TaskMessage:
    fields: dict[str, object] = {
        "id": "abc",
        "task": "t.add",
        "args": [1, "x"],
        "kwargs": {"k": [1.5]},
        "created_at": NOW,
    }
    fields.update(overrides)
    return TaskMessage(**fields)  # type: ignore[arg-type]


def test_round_trip_keeps_every_field() -> None:
    codec = Codec()
    original = message(eta=NOW, attempt=3, queue="q")
    body, headers = codec.encode(original)
    assert codec.decode(body, headers) == original
    raw = orjson.loads(body)
    assert raw["v"] == 1
    assert raw["created_at"] == "2026-01-02T03:04:05+00:00"


def test_fields_left_out_by_other_producers_take_their_defaults() -> None:
    body = b'{"v": 1, "id": "x", "task": "t", "created_at": "2026-01-02T03:04:05+00:00"}'
    decoded = Codec().decode(body)
    assert decoded == TaskMessage(id="x", task="t", created_at=NOW)
    assert (decoded.args, decoded.kwargs, decoded.attempt, decoded.queue) == ([], {}, 1, "default")
    assert decoded.eta is None


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"\x80\x03not json", "not JSON"),
        (pickle.dumps({"v": 1}), "not JSON"),
        (b"[1, 2]", "not an envelope"),
        (b'{"v": 99, "id": "x"}', "version 99"),
        (b'{"v": 1, "id": "x"}', "malformed envelope"),
        (b'{"v": 1, "id": "x", "task": "t", "created_at": "2026-01-01T00:00:00"}', "timezone"),
        (b'{"v": 1, "id": null, "task": "t", "created_at": "2026-01-01T00:00:00+00:00"}', "id"),
        (b'{"v": 1, "id": "x", "task": 7, "created_at": "2026-01-01T00:00:00+00:00"}', "task"),
        (
            b'{"v": 1, "id": "x", "task": "t", "attempt": "2", '
            b'"created_at": "2026-01-01T00:00:00+00:00"}',
            r"expected an integer, got str @ \$\.attempt",
        ),
        (
            b'{"v": 1, "id": "x", "task": "t", "attempt": true, '
            b'"created_at": "2026-01-01T00:00:00+00:00"}',
            "attempt",
        ),
        (
            b'{"v": 1, "id": "x", "task": "t", "queue": ["q"], '
            b'"created_at": "2026-01-01T00:00:00+00:00"}',
            r"expected a string, got list @ \$\.queue",
        ),
    ],
)
def test_bad_bodies_raise_one_named_error(body: bytes, match: str) -> None:
    with pytest.raises(MessageDecodeError, match=match):
        Codec().decode(body)


def test_size_limit_is_enforced_with_advice() -> None:
    codec = Codec(max_message_bytes=100)
    with pytest.raises(MessageTooLargeError, match="pass a reference"):
        codec.encode(message(args=["x" * 200]))


def test_unencodable_arguments_are_a_type_error() -> None:
    with pytest.raises(TypeError, match="not JSON-encodable"):
        Codec().encode(message(args=[object()]))


def test_signed_messages_reject_tampering_and_missing_signatures() -> None:
    codec = Codec(signing_key=b"secret")
    body, headers = codec.encode(message())
    assert SIGNATURE_HEADER in headers
    assert codec.decode(body, headers).id == "abc"
    with pytest.raises(MessageDecodeError, match="signature"):
        codec.decode(body.replace(b"t.add", b"t.rm!"), headers)
    with pytest.raises(MessageDecodeError, match="signature"):
        codec.decode(body, {})
    assert "secret" not in repr(codec)


def test_a_newer_producers_extra_field_is_ignored_not_kept() -> None:
    raw = orjson.loads(Codec().encode(message())[0])
    raw["priority"] = 5  # a field this worker does not know
    decoded = Codec().decode(orjson.dumps(raw))
    assert decoded == message()
    assert not hasattr(decoded, "priority")


def test_decoded_messages_are_frozen_values_like_built_ones() -> None:
    codec = Codec()
    decoded = codec.decode(codec.encode(message(eta=NOW))[0])
    assert decoded == message(eta=NOW)
    assert isinstance(decoded.created_at, datetime)
    assert decoded.eta == NOW
    with pytest.raises(AttributeError):
        decoded.attempt = 2  # type: ignore[misc]
    assert attrs.evolve(decoded, attempt=2).attempt == 2


def test_consecutive_creation_times_each_decode_to_their_own_value() -> None:
    """The decoder reuses the last creation time parsed: a different text must not get it."""
    codec = Codec()
    later = datetime(2026, 1, 2, 3, 4, 6, 7, tzinfo=UTC)
    times = [NOW, NOW, later, NOW]
    decoded = [codec.decode(codec.encode(message(created_at=t))[0]) for t in times]
    assert [m.created_at for m in decoded] == times
    naive = b'{"v":1,"id":"x","task":"t","args":[],"kwargs":{},"attempt":1,"queue":"q",'
    with pytest.raises(MessageDecodeError, match="timezone"):
        codec.decode(naive + b'"created_at":"2026-01-02T03:04:05","eta":null}')


def test_encode_many_matches_encoding_each_message() -> None:
    for codec in (Codec(), Codec(signing_key=b"k")):
        calls = [("a", [1], {}), ("b", [], {"x": "y"})]
        batch = codec.encode_many("t.add", calls, queue="q", created_at=NOW)
        one_by_one = [
            codec.encode(message(id=i, task="t.add", args=a, kwargs=k, queue="q"))
            for i, a, k in calls
        ]
        assert batch == one_by_one
    with pytest.raises(MessageTooLargeError, match="pass a reference"):
        Codec(max_message_bytes=100).encode_many(
            "t", [("a", ["x" * 200], {})], queue="q", created_at=NOW
        )
    with pytest.raises(TypeError, match="not JSON-encodable"):
        Codec().encode_many("t", [("a", [object()], {})], queue="q", created_at=NOW)


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, None, True], "b": "é\n", "when": NOW},
        ["x" * 5_000],  # past orjson's first buffer and Python's small-object allocator
        {},
    ],
)
def test_to_json_writes_orjsons_bytes(value: object) -> None:
    """The copy out of orjson's buffer (see to_json) changes nothing in the bytes."""
    body = to_json(value)
    assert type(body) is bytes
    assert body == orjson.dumps(value)


def test_to_json_raises_orjsons_type_error() -> None:
    with pytest.raises(TypeError):
        to_json({"f": object()})


@settings(max_examples=2000, deadline=None)
@given(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59)),
    st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), None]),
    st.booleans(),
)
def test_envelope_times_are_written_as_isoformat_writes_them(
    moment: datetime, zone: timezone | None, whole_second: bool
) -> None:
    moment = moment.replace(tzinfo=zone, microsecond=0 if whole_second else moment.microsecond)
    assert isoformat(moment) == moment.isoformat()
    if zone is not None:
        body, _ = Codec().encode_fields(
            "t1", "a.add", [], {}, queue="q", created_at=moment, eta=moment
        )
        sent = orjson.loads(body)
        assert sent["created_at"] == sent["eta"] == moment.isoformat()
