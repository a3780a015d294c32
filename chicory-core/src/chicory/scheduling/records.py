"""Each schedule's "last fire" record, kept in the app's result backend.

The record is what a scheduler starting up reads to tell which fires fell due while no
scheduler ran (the missed-fire policy), and what ``chicory schedules`` shows as the last
fire. It lives under the id ``chicory-schedule:<name>`` (never a task id: task ids of fires
are ``<name>@<time>``), as a small JSON document, kept long after the fire
(:func:`record_ttl`).

Several schedulers write it: each after firing (or finding its fire enqueued already by
another). A write only moves it forward: a scheduler reads it first and writes only a later
fire. Two writers racing may leave the earlier of their two fires; the next fire corrects
it, and the worst that does is make a restarted scheduler try a fire again, which unique
enqueue turns into a duplicate. The record never decides on its own whether a fire runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

import orjson

from chicory.backend import ResultBackend

__all__ = ["RECORD_PREFIX", "last_fire", "record_fire", "record_id", "record_ttl"]

RECORD_PREFIX: Final = "chicory-schedule:"
"""The record of schedule ``name`` is stored under ``RECORD_PREFIX + name``."""

_MIN_TTL: Final = timedelta(days=35)


def record_id(name: str) -> str:
    """The result-backend id of schedule ``name``'s record."""
    return RECORD_PREFIX + name


def record_ttl(period: timedelta) -> float:
    """Seconds a record is kept: three periods, at least 35 days (a monthly schedule's
    record outlives a missed month)."""
    return max(_MIN_TTL, 3 * period).total_seconds()


async def last_fire(backend: ResultBackend, name: str) -> datetime | None:
    """The last fire recorded for schedule ``name`` (aware UTC), or ``None``.

    A record that cannot be read (written by something else) counts as none.
    """
    data = await backend.get(record_id(name))
    if data is None:
        return None
    try:
        value = orjson.loads(data)["last_fire"]
        moment = datetime.fromisoformat(value)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
    return moment if moment.tzinfo is not None else None


async def record_fire(
    backend: ResultBackend, name: str, at: datetime, task_id: str, *, ttl: float
) -> None:
    """Record ``at`` as schedule ``name``'s last fire, unless a later one is recorded."""
    known = await last_fire(backend, name)
    if known is not None and known >= at:
        return
    data = orjson.dumps(
        {"schedule": name, "last_fire": at.astimezone(UTC).isoformat(), "task_id": task_id}
    )
    await backend.store(record_id(name), data, final=False, ttl=ttl)
