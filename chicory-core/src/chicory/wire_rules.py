"""What a well-formed envelope is: the limits the decoder enforces beyond JSON types.

A worker reads a message only if a Chicory producer could have written it: the decoder
(:meth:`chicory.codec.Codec.decode`) checks each field's type and range instead of
coercing, so a malformed message is dead-lettered once, with the field named, rather than
run with arguments it never had or retried without end. The rules:

* the body is at most the worker's ``max_message_bytes`` (checked before it is parsed);
* it nests containers at most :data:`MAX_DEPTH` deep, as deep as the encoder writes (a
  message the worker could read but never re-encode would fail its retry);
* ``v`` is the integer 1 (``true`` is not), ``args`` a JSON array, ``kwargs`` a JSON
  object, ``attempt`` an integer from 1 to :data:`MAX_ATTEMPT`;
* ``id`` is 1 to :data:`MAX_ID_LENGTH` printable characters; ``task`` and ``queue`` are
  non-empty strings; ``created_at`` (and ``eta`` when set) aware ISO-8601 times;
* headers map strings to strings.

On the producer side, the encoder refuses what JSON cannot say: NaN and infinities (never
sent as ``null``), datetimes and other values that are not JSON (never turned into text).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import orjson

from chicory.errors import MessageDecodeError

__all__ = [
    "MAX_ATTEMPT",
    "MAX_DEPTH",
    "MAX_ID_LENGTH",
    "check_depth",
    "check_header_types",
    "field_problem",
    "non_finite_path",
]

MAX_DEPTH: Final = 254
"""Deepest nesting of arrays and objects in a body (the envelope object counts as one): what
the JSON encoder writes; it refuses deeper values, so a worker must not accept them."""

MAX_ATTEMPT: Final = 100_000
"""Highest ``attempt`` a message may carry (far above any sane ``max_retries``)."""

MAX_ID_LENGTH: Final = 255
"""Longest task id, in characters (ids are result keys and log fields)."""


def check_depth(body: bytes, raw: object) -> None:
    """Refuse a parsed body nested deeper than :data:`MAX_DEPTH`.

    Free for almost every body: one that is short, or holds few brackets, cannot be that
    deep; only the others are re-encoded to find out.

    Raises:
        MessageDecodeError: the body nests too deep (or could not be written again).
    """
    if len(body) <= 2 * MAX_DEPTH or body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return
    try:
        orjson.dumps(raw)
    except TypeError as exc:
        raise MessageDecodeError(
            f"body nests arrays or objects more than {MAX_DEPTH} levels deep ({exc}); "
            "Chicory never writes such a message and could not retry it"
        ) from exc


def field_problem(
    task_id: str, task: str, attempt: int, queue: str, args: object, kwargs: object
) -> str | None:
    """What is wrong with the values of an envelope whose fields have their types, as
    ``"$.field: ..."``; ``None`` if nothing is."""
    if type(args) is not list:
        return f"$.args: must be a JSON array, got {type(args).__name__}"
    if type(kwargs) is not dict:
        return f"$.kwargs: must be a JSON object, got {type(kwargs).__name__}"
    if not 0 < attempt <= MAX_ATTEMPT:
        return f"$.attempt: must be from 1 to {MAX_ATTEMPT}, got {attempt}"
    if not 0 < len(task_id) <= MAX_ID_LENGTH or not task_id.isprintable():
        return (
            f"$.id: must be 1 to {MAX_ID_LENGTH} printable characters, got "
            f"{task_id[:80]!r}{'...' if len(task_id) > 80 else ''}"
        )
    if not task:
        return "$.task: must not be empty"
    if not queue:
        return "$.queue: must not be empty"
    return None


def check_header_types(headers: Mapping[Any, Any]) -> None:
    """Refuse headers that do not map strings to strings.

    Raises:
        MessageDecodeError: a header name or value is not a string.
    """
    for name, value in headers.items():
        if type(name) is not str or type(value) is not str:
            raise MessageDecodeError(
                f"header {name!r} is {type(value).__name__} {value!r:.80}; headers map text to text"
            )


def non_finite_path(value: Any, path: str = "") -> str | None:
    """Where ``value`` holds a NaN or an infinity (``"[0].x"``), or ``None``."""
    kind = type(value)
    if kind is float:
        return None if math.isfinite(value) else path or "the value"
    if kind is list or kind is tuple:
        for index, item in enumerate(value):
            found = non_finite_path(item, f"{path}[{index}]")
            if found is not None:
                return found
    elif kind is dict:
        for key, item in value.items():
            found = non_finite_path(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, float) and not math.isfinite(value):
        return path or "the value"
    return None
