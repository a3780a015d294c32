"""How a result record is marked in its key and announced when it is final.

A stored value is one mark byte, :data:`FINAL` or :data:`PENDING`, followed by the record.
A final record is published on ``<p>:results:final`` as ``<len>:<task id>`` followed by the
marked record, or by nothing when the record is over :data:`INLINE_MAX` bytes (its waiters
read the key then). The ``store_result`` scripts write both
(:mod:`chicory_redis.scripts.results`); the result listener parses the notification
(:func:`parse_notification`).
"""

from __future__ import annotations

from typing import Final

__all__ = ["FINAL", "INLINE_MAX", "PENDING", "parse_notification"]

FINAL: Final = b"F"
"""First byte of a stored final record."""

PENDING: Final = b"P"
"""First byte of a stored record that is not final."""

INLINE_MAX: Final = 8192
"""Largest record (bytes) published with its notification; bigger ones are read back."""


def parse_notification(payload: bytes) -> tuple[str, bytes | None] | None:
    """Split a notification ``<len>:<task id><marked record or nothing>``.

    Returns:
        ``(task_id, record)``, with ``record`` ``None`` when only the id was published;
        ``None`` if ``payload`` is not a notification.
    """
    colon = payload.find(b":")
    if colon <= 0 or colon > 10:
        return None
    try:
        size = int(payload[:colon])
    except ValueError:
        return None
    end = colon + 1 + size
    if size < 0 or end > len(payload):
        return None
    task_id = payload[colon + 1 : end].decode(errors="replace")
    if end == len(payload):
        return task_id, None
    if payload[end : end + 1] != FINAL:
        return None
    return task_id, payload[end + 1 :]
