"""When a schedule fires: cron expressions in a time zone, and fixed intervals.

**Cron** (``cron="0 2 * * *"``, ``tz="Europe/Paris"``): the expression names wall-clock
times in the schedule's zone, read by `cronsim <https://pypi.org/project/cronsim/>`_ (the
``chicory-core[scheduler]`` extra; imported only when a cron schedule is used). Each matching
wall-clock time fires once, at the instant it names. Daylight-saving changes:

* a wall-clock time that does not exist (02:30 on the night clocks jump from 02:00 to 03:00)
  fires once, shifted forward by the gap (at 03:30 the new time: what the time would be
  without the jump);
* a wall-clock time that happens twice (02:30 on the night clocks go back from 03:00 to 02:00)
  fires once, the first time;
* fires come in time order and an instant fires once, however many wall-clock times land on
  it (``*/30 * * * *`` on the spring night in Paris: 01:30, 03:00 (02:00 shifted, and 03:00
  itself), 03:30 (02:30 shifted, and 03:30), 04:00; on the autumn night 02:00, 02:30 (summer
  time), 03:00 (winter time): the repeated hour does not fire again).

To fire by elapsed time instead, use an interval, or ``tz="UTC"`` (no changes).

**Intervals** (``every=timedelta(minutes=5)``): the instants ``start + k * every`` (``start``
defaults to the Unix epoch, so every scheduler computes the same instants: a 5-minute
schedule fires at :00, :05, ...). Elapsed time, so daylight saving plays no part.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from chicory.errors import ConfigurationError

__all__ = [
    "EPOCH",
    "check_cron",
    "cron_after",
    "cron_before",
    "interval_after",
    "interval_before",
    "zone",
]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
"""The default anchor of interval schedules."""

_SHIFT: Final = timedelta(hours=3)
"""More than any daylight-saving jump: how far a wall-clock time's instant can move."""

_INSTALL: Final = "pip install 'chicory-core[scheduler]'"


def _cronsim() -> Any:
    """The cronsim module, or a clear error saying how to install it."""
    try:
        return importlib.import_module("cronsim")
    except ImportError as exc:
        raise ConfigurationError(
            f"cron schedules need the cronsim library: {_INSTALL} (interval schedules, "
            "every=timedelta(...), need nothing more)"
        ) from exc


def zone(name: str) -> tzinfo:
    """The time zone ``name`` (an IANA name such as ``"Europe/Paris"``).

    Raises:
        ConfigurationError: no such zone (on systems without zone data, install ``tzdata``).
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigurationError(
            f"unknown time zone {name!r}: use an IANA name such as 'Europe/Paris' or 'UTC' "
            "(on a system without zone data, pip install tzdata)"
        ) from exc


def check_cron(expression: str) -> None:
    """Raise :class:`ConfigurationError` unless ``expression`` is a valid cron expression."""
    cronsim = _cronsim()
    try:
        cronsim.CronSim(expression, datetime(2000, 1, 1))
    except cronsim.CronSimError as exc:
        raise ConfigurationError(
            f"invalid cron expression {expression!r}: {exc} (five fields: minute hour "
            "day-of-month month day-of-week, e.g. '0 2 * * *')"
        ) from exc


def _instant(wall: datetime, where: tzinfo) -> datetime:
    """The UTC instant of the naive wall-clock time ``wall`` in ``where``: the first one of
    a repeated time, a missing time shifted forward by the gap (PEP 495's ``fold=0``)."""
    return wall.replace(tzinfo=where, fold=0).astimezone(UTC)


def cron_after(expression: str, where: tzinfo, after: datetime) -> datetime:
    """The first fire of ``expression`` in ``where`` strictly after ``after`` (aware UTC).

    Wall-clock candidates are read from a little before ``after`` (a shifted candidate may
    land after it) to a little beyond the first hit, and the earliest instant wins.
    """
    cronsim = _cronsim()
    start = (after - _SHIFT).astimezone(where).replace(tzinfo=None)
    best: datetime | None = None
    stop: datetime | None = None
    for wall in cronsim.CronSim(expression, start):
        if stop is not None and wall > stop:
            break
        instant = _instant(wall, where)
        if instant > after and (best is None or instant < best):
            best = instant
            if stop is None:  # a later wall-clock time lands at most a jump earlier
                stop = wall + _SHIFT
    assert best is not None  # CronSim iterates forever or raises
    return best


def cron_before(expression: str, where: tzinfo, moment: datetime) -> datetime | None:
    """The last fire of ``expression`` in ``where`` at or before ``moment``, or ``None``
    when there is none in the year before it."""
    cronsim = _cronsim()
    start = (moment + _SHIFT).astimezone(where).replace(tzinfo=None)
    best: datetime | None = None
    stop: datetime | None = None
    floor = moment - timedelta(days=366)
    for wall in cronsim.CronSim(expression, start + timedelta(seconds=1), reverse=True):
        if stop is not None and wall < stop:
            break
        instant = _instant(wall, where)
        if instant < floor:
            break
        if instant <= moment and (best is None or instant > best):
            best = instant
            if stop is None:
                stop = wall - _SHIFT
    return best


def interval_after(every: timedelta, start: datetime, after: datetime) -> datetime:
    """The first instant ``start + k * every`` strictly after ``after``."""
    if after < start:
        return start
    steps = (after - start) // every + 1
    return start + steps * every


def interval_before(every: timedelta, start: datetime, moment: datetime) -> datetime | None:
    """The last instant ``start + k * every`` at or before ``moment`` (``None`` before
    ``start``)."""
    if moment < start:
        return None
    return start + ((moment - start) // every) * every
