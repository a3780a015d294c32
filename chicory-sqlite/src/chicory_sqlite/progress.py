"""Progress feeds on SQLite (:class:`chicory.progress.ProgressFeed`).

A progress report is written twice in one transaction: as the task's non-final record in
``chicory_results`` (what ``result.progress()`` reads; never over a live final record) and
as a row of ``chicory_progress``, whose ``seq`` grows with every report. A subscriber
remembers the last ``seq`` it has seen and, at each change of the database (its own
process's commits, or ``PRAGMA data_version`` for other processes'), reads the task's rows
after it: every report, in order, however fast they come. Rows of the log live
:data:`LOG_SECONDS` (a subscriber reads them within milliseconds) and are pruned with the
other expired rows.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, Final

__all__ = ["LOG_SECONDS", "newer_reports", "record_report", "start_of_log"]

LOG_SECONDS: Final = 300.0
"""How long a report stays in ``chicory_progress`` (the record in ``chicory_results`` lives
its ttl)."""

_RECORD = (
    "INSERT INTO chicory_results (task_id, data, final, expires_at) VALUES (?, ?, 0, ?)"
    " ON CONFLICT (task_id) DO UPDATE SET data = excluded.data, final = 0,"
    " expires_at = excluded.expires_at"
    " WHERE NOT (chicory_results.final AND chicory_results.expires_at > ?)"
)


def record_report(
    conn: sqlite3.Connection, task_id: str, data: bytes, ttl: float, now: float
) -> None:
    """Store ``data`` as the record of ``task_id`` and log it for subscribers, unless a live
    final record stands (then nothing is written). Runs inside the caller's transaction."""
    stored = conn.execute(_RECORD, (task_id, data, now + ttl, now)).rowcount
    if stored:
        conn.execute(
            "INSERT INTO chicory_progress (task_id, data, expires_at) VALUES (?, ?, ?)",
            (task_id, data, now + LOG_SECONDS),
        )


def start_of_log(task_id: str) -> Callable[[sqlite3.Connection], int]:
    """A read returning the last ``seq`` logged for ``task_id`` (0 for none)."""
    return lambda conn: int(
        conn.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM chicory_progress WHERE task_id = ?", (task_id,)
        ).fetchone()[0]
    )


def newer_reports(task_id: str, after: int) -> Callable[[sqlite3.Connection], list[Any]]:
    """A read returning ``(seq, data)`` of the reports of ``task_id`` after ``after``."""
    return lambda conn: conn.execute(
        "SELECT seq, data FROM chicory_progress WHERE task_id = ? AND seq > ? ORDER BY seq",
        (task_id, after),
    ).fetchall()
