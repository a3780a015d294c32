"""The decoder checks instead of coercing; the encoder refuses what JSON cannot say;
signatures fail closed on any header value and verify with rotated keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from chicory import Chicory
from chicory.codec import Codec
from chicory.envelope import SIGNATURE_HEADER, TaskMessage
from chicory.errors import ConfigurationError, MessageDecodeError
from chicory.wire_rules import MAX_ATTEMPT, MAX_DEPTH

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def envelope(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "v": 1,
        "id": "t1",
        "task": "t.add",
        "args": [1, 2],
        "kwargs": {},
        "attempt": 1,
        "queue": "default",
        "created_at": NOW.isoformat(),
        "eta": None,
    }
    fields.update(changes)
    return {k: v for k, v in fields.items() if v is not _DROP}


_DROP = object()


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"args": "ab"}, "$.args"),
        ({"args": {"x": 1}}, "$.args"),
        ({"args": 5}, "$.args"),
        ({"kwargs": [1]}, "$.kwargs"),
        ({"kwargs": "x"}, "$.kwargs"),
        ({"attempt": -5}, "$.attempt"),
        ({"attempt": 0}, "$.attempt"),
        ({"attempt": MAX_ATTEMPT + 1}, "$.attempt"),
        ({"attempt": True}, "$.attempt"),
        ({"attempt": 1.0}, "$.attempt"),
        ({"id": ""}, "$.id"),
        ({"id": "x" * 256}, "$.id"),
        ({"id": "a\nb"}, "$.id"),
        ({"id": 7}, "$.id"),
        ({"task": ""}, "$.task"),
        ({"queue": ""}, "$.queue"),
        ({"created_at": "2026-01-01T00:00:00"}, "$.created_at"),
        ({"eta": "soon"}, "$.eta"),
        # with an extra field, the careful path checks the values too
        ({"args": "ab", "extra": 1}, "$.args"),
        ({"attempt": -5, "extra": 1}, "$.attempt"),
    ],
)
def test_a_malformed_field_is_named_not_coerced(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(MessageDecodeError, match=named.replace("$", r"\$")):
        Codec().decode(orjson.dumps(envelope(**changes)))


@pytest.mark.parametrize("version", [True, 1.0, "1", None, 2])
def test_only_the_integer_1_is_version_1(version: object) -> None:
    with pytest.raises(MessageDecodeError, match="envelope version"):
        Codec().decode(orjson.dumps(envelope(v=version)))


def test_a_well_formed_envelope_still_decodes_both_ways() -> None:
    codec = Codec()
    assert codec.decode(orjson.dumps(envelope())).args == [1, 2]
    careful = codec.decode(orjson.dumps(envelope(extra="ignored", attempt=MAX_ATTEMPT)))
    assert (careful.args, careful.attempt) == ([1, 2], MAX_ATTEMPT)


def test_decode_refuses_what_encode_could_never_write() -> None:
    """Nesting the encoder writes decodes; one level more is refused by both."""
    codec = Codec()
    deepest = MAX_DEPTH - 2  # the envelope object and the args array are two levels
    body, _ = codec.encode(TaskMessage(id="d", task="t", args=[nested(deepest)], created_at=NOW))
    assert codec.decode(body).id == "d"
    with pytest.raises(TypeError, match="not JSON-encodable"):
        codec.encode(TaskMessage(id="d", task="t", args=[nested(deepest + 1)], created_at=NOW))
    deeper = orjson.dumps(envelope(args=[nested(deepest)]))
    deeper = deeper.replace(b'"args":[', b'"args":[[', 1).replace(b"]]", b"]]]", 1)
    with pytest.raises(MessageDecodeError, match=f"more than {MAX_DEPTH} levels"):
        codec.decode(deeper)
    with pytest.raises(MessageDecodeError, match=f"more than {MAX_DEPTH} levels"):
        codec.decode(_deep_body(300))


def _deep_body(depth: int) -> bytes:
    return (
        b'{"v":1,"id":"x","task":"t","args":[%s1%s],"kwargs":{},"attempt":1,'
        % (
            b"[" * depth,
            b"]" * depth,
        )
        + b'"queue":"q","created_at":"2026-01-01T00:00:00+00:00","eta":null}'
    )


def test_a_body_over_the_limit_is_refused_unread() -> None:
    body = orjson.dumps(envelope(args=["x" * 2000]))
    Codec(max_message_bytes=len(body)).decode(body)
    with pytest.raises(MessageDecodeError, match=r"over this worker's max_message_bytes of 1000"):
        Codec(max_message_bytes=1000).decode(body)


def test_headers_must_map_text_to_text() -> None:
    body = orjson.dumps(envelope())
    with pytest.raises(MessageDecodeError, match="header 'n'"):
        Codec().decode(body, {"n": 5})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "signature",
    ["é" * 64, "\u0000" * 64, "zz", "", "0" * 64, "😀" * 16, "A" * 65],
)
def test_a_garbage_signature_is_a_decode_error(signature: str) -> None:
    codec = Codec(signing_key=b"k")
    body, _ = codec.encode(TaskMessage(id="s", task="t", created_at=NOW))
    with pytest.raises(MessageDecodeError, match="signature"):
        codec.decode(body, {SIGNATURE_HEADER: signature})


def test_a_non_text_signature_or_header_is_a_decode_error() -> None:
    codec = Codec(signing_key=b"k")
    body, headers = codec.encode(TaskMessage(id="s", task="t", created_at=NOW), {"h": "v"})
    with pytest.raises(MessageDecodeError):
        codec.decode(body, {**headers, SIGNATURE_HEADER: 5})  # type: ignore[dict-item]
    with pytest.raises(MessageDecodeError):
        codec.decode(body, {**headers, "h": "\ud800"})


def test_keys_rotate_one_signs_several_verify() -> None:
    old, new = Codec(signing_key=b"old"), Codec(signing_key=b"new")
    both = Codec(signing_key=b"new", verification_keys=[b"old"])
    message = TaskMessage(id="r", task="t", created_at=NOW)
    for producer in (old, new):
        body, headers = producer.encode(message, {"tenant": "a"})
        assert both.decode(body, headers).id == "r"
    body, headers = both.encode(message)
    new.decode(body, headers)  # it signs with the signing key
    with pytest.raises(MessageDecodeError, match="none of this worker's keys"):
        old.decode(body, headers)
    with pytest.raises(MessageDecodeError, match="none of this worker's keys"):
        Codec(signing_key=b"other").decode(body, headers)


def test_verification_keys_need_a_signing_key() -> None:
    with pytest.raises(ConfigurationError, match="need a signing_key"):
        Chicory(broker="memory://", verification_keys=["old"], load_entry_points=False)


def test_the_signature_covers_user_headers_and_time_limits_but_not_history() -> None:
    codec = Codec(signing_key=b"k")
    body, headers = codec.encode(
        TaskMessage(id="h", task="t", created_at=NOW), {"tenant": "a", "chicory-timeout": "5.0"}
    )
    codec.decode(body, {**headers, "chicory-history": "[]"})
    for changed in ({"tenant": "b"}, {"chicory-timeout": "500.0"}, {"extra": "x"}):
        with pytest.raises(MessageDecodeError, match="signature is wrong"):
            codec.decode(body, {**headers, **changed})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_are_refused_not_sent_as_null(value: float) -> None:
    codec = Codec()
    message = TaskMessage(id="n", task="t", args=[1, {"x": [value]}], created_at=NOW)
    with pytest.raises(ValueError, match=r"argument args\[1\]\.x\[0\] of task 't' is NaN"):
        codec.encode(message)
    with pytest.raises(ValueError, match="NaN or infinite"):
        codec.encode_many("t", [("a", [], {"k": value})], queue="q", created_at=NOW)
    # None and the text "null" are still fine
    body, _ = codec.encode(TaskMessage(id="n", task="t", args=[None, "null"], created_at=NOW))
    assert codec.decode(body).args == [None, "null"]


def test_a_datetime_argument_is_refused_not_turned_into_text() -> None:
    codec = Codec()
    with pytest.raises(TypeError, match="not JSON-encodable"):
        codec.encode(TaskMessage(id="d", task="t", args=[NOW], created_at=NOW))
    with pytest.raises(TypeError, match="not JSON-encodable"):
        codec.encode_many("t", [("a", [NOW], {})], queue="q", created_at=NOW)
    eta = NOW + timedelta(seconds=5)
    body, _ = codec.encode(TaskMessage(id="d", task="t", created_at=NOW, eta=eta))
    assert codec.decode(body).eta == eta


@pytest.mark.parametrize("task_id", ["a\\u0000b", "a\\nb", "a\x7fb", "a\\u007fb", "a\\u2028b"])
def test_an_id_that_is_not_printable_is_refused_however_it_is_written(task_id: str) -> None:
    """Escaped control characters, a raw DEL byte, a non-ASCII separator: none is an id."""
    body = orjson.dumps(envelope(id="@")).replace(b'"@"', b'"%s"' % task_id.encode())
    with pytest.raises(MessageDecodeError, match=r"\$\.id"):
        Codec().decode(body)


def test_the_size_limit_follows_a_changed_max_message_bytes() -> None:
    codec = Codec()
    body = orjson.dumps(envelope(args=["x" * 100]))
    codec.decode(body)
    codec.max_message_bytes = 100
    with pytest.raises(MessageDecodeError, match="max_message_bytes of 100"):
        codec.decode(body)
