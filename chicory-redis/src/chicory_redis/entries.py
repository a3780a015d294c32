"""How one message is laid out in Redis: stream entries and delayed-set members.

A message is stored *packed*: ``id \\n n \\n headers \\n body`` (message id, deliveries counted
before, headers as JSON, body), one string. A stream entry holds it as its single field
``m``; a delayed message is the same string as a sorted-set member. Neither the id (hex
digits), the count nor the JSON headers can hold a newline, so the first three newlines
split it. See :mod:`chicory_redis.scripts` for the scripts that write it; this module is its
Python side.

Entries in the earlier layout (four fields ``id``, ``n``, ``headers``, ``body``), left in a
stream by a previous version, still decode.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final, NamedTuple

from chicory.broker import DeadLetter

__all__ = [
    "STREAM_ID",
    "StoredMessage",
    "dead_letter_from_entry",
    "decode_headers",
    "encode_headers",
    "message_from_entry",
    "message_from_fields",
    "message_from_packed",
    "new_message_id",
    "new_message_ids",
    "pack_message",
]

STREAM_ID: Final = re.compile(r"^\d+-\d+$")
"""What a stream entry id (and so a dead letter id) looks like."""


def new_message_id() -> str:
    """Return a fresh message id (stable across redeliveries of that message).

    128 random bits as 32 hex digits, like ``uuid4().hex`` but without building a UUID.
    """
    return os.urandom(16).hex()


def new_message_ids(count: int) -> list[str]:
    """Return ``count`` fresh message ids (see :func:`new_message_id`) from one ``urandom``."""
    raw = os.urandom(16 * count).hex()
    return [raw[i : i + 32] for i in range(0, 32 * count, 32)]


def encode_headers(headers: Mapping[str, str] | None) -> str:
    """Encode headers as compact JSON (never containing a raw newline)."""
    if not headers:
        return "{}"
    return json.dumps(dict(headers), separators=(",", ":"), ensure_ascii=True)


def decode_headers(raw: bytes | str) -> dict[str, str]:
    """Decode headers written by :func:`encode_headers`; anything unreadable becomes ``{}``."""
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def pack_message(message_id: str, prior: int, headers: str, body: bytes) -> bytes:
    """Return a message packed (see the module docstring): a stream entry's field ``m``, or
    a delayed sorted-set member (unique: it holds the id)."""
    return b"\n".join((message_id.encode(), str(prior).encode(), headers.encode(), body))


class StoredMessage(NamedTuple):
    """A message read from a queue stream (a named tuple: cheap to build per entry).

    Attributes:
        entry_id: The stream entry id (changes when the message is requeued).
        message_id: The message id (stable).
        prior: Deliveries counted before this entry was added.
        headers: Decoded headers.
        raw_headers: Headers as stored (JSON), to write back unchanged.
        body: The body.
    """

    entry_id: str
    message_id: str
    prior: int
    headers: Mapping[str, str]
    raw_headers: str
    body: bytes


def _text(value: bytes | str | None, default: str = "") -> str:
    if value is None:
        return default
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def _int(value: bytes | str | None) -> int:
    try:
        return int(_text(value, "0"))
    except ValueError:
        return 0


def _stored(
    eid: str, message_id: bytes | None, n: bytes | None, raw: bytes | None, body: bytes
) -> StoredMessage:
    """The :class:`StoredMessage` of entry ``eid`` from its parts as stored (a part that is
    missing takes its default: the entry id, no earlier deliveries, no headers)."""
    if raw is None or raw == b"{}":  # what almost every message carries: no JSON parse needed
        raw_headers, headers = "{}", {}
    else:
        raw_headers = raw.decode(errors="replace")
        headers = decode_headers(raw_headers)
    return StoredMessage(
        eid, _text(message_id) or eid, 0 if n == b"0" else _int(n), headers, raw_headers, body
    )


def message_from_packed(entry_id: bytes | str, packed: bytes) -> StoredMessage:
    """Build a :class:`StoredMessage` from a packed message (the ``m`` field of an entry).

    A value that is not four newline-separated parts becomes a message whose body is the
    whole value, which the worker then fails to decode and dead-letters with the reason.
    """
    eid = _text(entry_id)
    parts = packed.split(b"\n", 3)
    if len(parts) != 4:
        return StoredMessage(eid, eid, 0, {}, "{}", packed)
    message_id, n, raw, body = parts
    return _stored(eid, message_id, n, raw, body)


def message_from_entry(entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> StoredMessage:
    """Build a :class:`StoredMessage` from one ``XCLAIM`` (or ``XREADGROUP``) entry.

    Entries written by something other than Chicory still decode (missing fields become
    empty), so the worker can dead-letter them with a readable reason instead of crashing.
    """
    packed = fields.get(b"m")
    if packed is not None:
        return message_from_packed(entry_id, packed)
    get = fields.get  # the earlier layout: one field per part
    return _stored(_text(entry_id), get(b"id"), get(b"n"), get(b"headers"), get(b"body", b""))


def message_from_fields(entry_id: bytes, fields: list[bytes] | None) -> StoredMessage | None:
    """Build a :class:`StoredMessage` from an entry as ``XREADGROUP`` sends it (a flat list).

    An entry Chicory wrote is the one field ``m``; anything else goes through
    :func:`message_from_entry`. Returns ``None`` for an entry without fields (deleted after
    it was read).
    """
    if not fields:
        return None
    if len(fields) == 2 and fields[0] == b"m":
        return message_from_packed(entry_id, fields[1])
    pairs = iter(fields)
    return message_from_entry(entry_id, dict(zip(pairs, pairs, strict=False)))


def dead_letter_from_entry(
    queue: str, entry_id: bytes | str, fields: Mapping[bytes, bytes]
) -> DeadLetter:
    """Build a :class:`~chicory.broker.DeadLetter` from one dead-letter stream entry."""
    dead_at_ms = _int(fields.get(b"dead_at"))
    return DeadLetter(
        id=_text(entry_id),
        queue=queue,
        body=fields.get(b"body", b""),
        headers=decode_headers(_text(fields.get(b"headers"), "{}")),
        reason=_text(fields.get(b"reason")),
        delivery_count=_int(fields.get(b"n")),
        dead_at=datetime.fromtimestamp(dead_at_ms / 1000, UTC),
    )
