"""What a message carries about its past: the ``chicory-history`` header, and the failure's
traceback in a dead letter's reason.

**History.** A task's message carries, in the ``chicory-history`` header, what happened to
the task before this message: each retry (the failed attempt and its error), each time it
was dead-lettered and each replay. The worker appends a ``retry`` entry when it publishes the
next attempt; a replay (:meth:`chicory.admin.Admin.replay`) appends a ``dead`` entry (when
and why the task was dead-lettered) and a ``replay`` entry. The header value is a JSON array
of objects ``{"at": ISO-8601, "event": "retry" | "dead" | "replay", "attempt": n,
"detail": text}``, oldest first, at most :data:`MAX_ENTRIES` entries (the oldest are dropped)
and :data:`MAX_DETAIL` characters of detail each. Headers other than Chicory's signature
travel with a task from one attempt to the next, so a dead letter keeps its whole story.

Anyone who can write to the broker can write any header: a value that is not such an array
reads as no history (:func:`read_history` never raises), and appending to it starts afresh.

Header names starting with ``chicory-`` are reserved for Chicory.

**Tracebacks.** A task that fails for good is dead-lettered with a reason of one line and,
after :data:`TRACEBACK_MARK`, the end of the failure's traceback (at most
:data:`MAX_TRACEBACK` characters), so the traceback outlives the result record, which
expires with ``result_ttl``. :func:`split_reason` takes a reason apart again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import attrs
import orjson

from chicory.envelope import SIGNATURE_HEADER, parse_aware

__all__ = [
    "HISTORY_HEADER",
    "MAX_DETAIL",
    "MAX_ENTRIES",
    "MAX_TRACEBACK",
    "TRACEBACK_MARK",
    "HistoryEntry",
    "carry_headers",
    "read_history",
    "split_reason",
    "with_history",
    "with_traceback",
]

HISTORY_HEADER: Final = "chicory-history"
MAX_ENTRIES: Final = 50
MAX_DETAIL: Final = 500
MAX_TRACEBACK: Final = 8000
TRACEBACK_MARK: Final = "\n\n--- traceback ---\n"


@attrs.frozen(kw_only=True)
class HistoryEntry:
    """One event in a task's past.

    Attributes:
        at: Aware-UTC time of the event.
        event: ``"retry"`` (an attempt failed and the next was published), ``"dead"`` (the
            task was dead-lettered) or ``"replay"`` (an operator replayed the dead letter).
        attempt: The attempt the event happened at.
        detail: The error of a retry, the reason of a dead letter, who replayed it.
    """

    at: datetime
    event: str
    attempt: int
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """The entry as the header stores it."""
        return {
            "at": self.at.isoformat(),
            "event": self.event,
            "attempt": self.attempt,
            "detail": self.detail[:MAX_DETAIL],
        }


def _entry(raw: Any) -> HistoryEntry | None:
    if type(raw) is not dict:
        return None
    at, event, attempt, detail = (
        parse_aware(raw.get("at")),
        raw.get("event"),
        raw.get("attempt"),
        raw.get("detail", ""),
    )
    if at is None or type(event) is not str or type(attempt) is not int or type(detail) is not str:
        return None
    return HistoryEntry(at=at, event=event, attempt=attempt, detail=detail[:MAX_DETAIL])


def read_history(headers: Mapping[str, str]) -> list[HistoryEntry]:
    """The history a message's headers carry, oldest first; ``[]`` if none or unreadable.

    Entries that are not well-formed are left out. Never raises.
    """
    text = headers.get(HISTORY_HEADER)
    if not text:
        return []
    try:
        raw = orjson.loads(text)
    except orjson.JSONDecodeError:
        return []
    if type(raw) is not list:
        return []
    return [entry for entry in map(_entry, raw) if entry is not None]


def with_history(headers: Mapping[str, str], *entries: HistoryEntry) -> dict[str, str]:
    """A copy of ``headers`` whose history has ``entries`` appended (oldest dropped beyond
    :data:`MAX_ENTRIES`)."""
    history = [*read_history(headers), *entries][-MAX_ENTRIES:]
    out = dict(headers)
    out[HISTORY_HEADER] = orjson.dumps([entry.to_json() for entry in history]).decode()
    return out


def carry_headers(previous: Mapping[str, str], fresh: Mapping[str, str]) -> dict[str, str]:
    """The headers of a task's next message: those of ``previous`` but its signature, then
    ``fresh`` (the new message's own, such as its signature) over them."""
    out = {name: value for name, value in previous.items() if name != SIGNATURE_HEADER}
    out.update(fresh)
    return out


def with_traceback(reason: str, traceback: str | None) -> str:
    """``reason`` followed by the end of ``traceback`` (see the module docstring)."""
    if not traceback:
        return reason
    tail = traceback.rstrip("\n")
    if len(tail) > MAX_TRACEBACK:
        tail = "...\n" + tail[-MAX_TRACEBACK:]
    return f"{reason}{TRACEBACK_MARK}{tail}"


def split_reason(text: str) -> tuple[str, str | None]:
    """A dead letter's reason as ``(reason, traceback)``; ``traceback`` is ``None`` when the
    reason carries none."""
    reason, mark, traceback = text.partition(TRACEBACK_MARK)
    return (reason, traceback) if mark else (text, None)
