"""How one message is laid out in Redis: stream entry fields and delayed-set members.

See :mod:`chicory_redis.scripts` for the layout; this module is its Python side.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

import attrs

from chicory.broker import DeadLetter

__all__ = [
    "STREAM_ID",
    "StoredMessage",
    "dead_letter_from_entry",
    "decode_headers",
    "delayed_member",
    "encode_headers",
    "message_from_entry",
    "new_message_id",
]

STREAM_ID: Final = re.compile(r"^\d+-\d+$")
"""What a stream entry id (and so a dead letter id) looks like."""


def new_message_id() -> str:
    """Return a fresh message id (stable across redeliveries of that message)."""
    return uuid.uuid4().hex


def encode_headers(headers: Mapping[str, str] | None) -> str:
    """Encode headers as compact JSON (never containing a raw newline)."""
    return json.dumps(dict(headers or {}), separators=(",", ":"), ensure_ascii=True)


def decode_headers(raw: bytes | str) -> dict[str, str]:
    """Decode headers written by :func:`encode_headers`; anything unreadable becomes ``{}``."""
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def delayed_member(message_id: str, prior: int, headers: str, body: bytes) -> bytes:
    """Return the delayed sorted-set member of a message (unique: it holds the id)."""
    return b"\n".join((message_id.encode(), str(prior).encode(), headers.encode(), body))


@attrs.frozen(kw_only=True)
class StoredMessage:
    """A message read from a queue stream.

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


def message_from_entry(entry_id: bytes | str, fields: Mapping[bytes, bytes]) -> StoredMessage:
    """Build a :class:`StoredMessage` from one ``XREADGROUP``/``XAUTOCLAIM`` entry.

    Entries written by something other than Chicory still decode (missing fields become
    empty), so the worker can dead-letter them with a readable reason instead of crashing.
    """
    eid = _text(entry_id)
    raw_headers = _text(fields.get(b"headers"), "{}")
    return StoredMessage(
        entry_id=eid,
        message_id=_text(fields.get(b"id"), eid),
        prior=_int(fields.get(b"n")),
        headers=decode_headers(raw_headers),
        raw_headers=raw_headers,
        body=fields.get(b"body", b""),
    )


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
