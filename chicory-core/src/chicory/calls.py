"""What one call of a task carries besides its arguments: its id, when it is due, and what
to tell the caller when its publish has an unknown outcome."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from chicory.errors import ConfigurationError, PublishOutcomeUnknownError
from chicory.wire_rules import MAX_ID_LENGTH

__all__ = [
    "MAX_DELAY",
    "check_task_id",
    "due_time",
    "new_task_id",
    "new_task_ids",
    "outcome_unknown",
]


def outcome_unknown(
    error: PublishOutcomeUnknownError, task_name: str, task_ids: Sequence[str]
) -> PublishOutcomeUnknownError:
    """``error`` again, naming the tasks whose publish it was and what to do about it."""
    if len(task_ids) == 1:
        which = f"task {task_name} {task_ids[0]}"
        safe = (
            f"apply_async(..., task_id={task_ids[0]!r}) only if running it twice is "
            f"harmless, or check later whether a result for {task_ids[0]!r} exists"
        )
    else:
        which = f"{len(task_ids)} tasks {task_name} (ids in .task_ids)"
        safe = "only those with no result later, or all if running twice is harmless"
    return PublishOutcomeUnknownError(
        f"{which}: {error}. Its outcome is unknown: it may be enqueued (a worker then runs "
        f"it and stores its result under its id) or not. Calling again may run it twice; "
        f"send again {safe}",
        tuple(task_ids),
    )


def new_task_ids(count: int) -> list[str]:
    """Return ``count`` random 128-bit task ids as 32 hex digits, with one ``urandom`` call."""
    raw = os.urandom(16 * count).hex()
    return [raw[i : i + 32] for i in range(0, 32 * count, 32)]


_SPARE_IDS: list[str] = []
"""Ids drawn ahead for single calls: one ``urandom`` call per 256 ids instead of per id."""

os.register_at_fork(after_in_child=_SPARE_IDS.clear)  # a child must never reuse them


MAX_DELAY: Final = timedelta(days=36525)
"""Furthest ahead a ``countdown`` or ``eta`` may put a run (a century)."""

_MAX_DELAY_SECONDS: Final = MAX_DELAY.total_seconds()


def check_task_id(task_id: object) -> None:
    """Check a task id a caller chose (``apply_async(task_id=...)``).

    Raises:
        ValueError: it is not 1 to 255 printable characters (what a worker accepts).
    """
    if (
        type(task_id) is not str
        or not 0 < len(task_id) <= MAX_ID_LENGTH
        or not task_id.isprintable()
    ):
        raise ValueError(
            f"task_id must be a string of 1 to {MAX_ID_LENGTH} printable characters, got "
            f"{task_id!r:.100}"
        )


def new_task_id() -> str:
    """Return one random 128-bit task id as 32 hex digits (see :func:`new_task_ids`)."""
    try:
        return _SPARE_IDS.pop()
    except IndexError:
        _SPARE_IDS.extend(new_task_ids(256))
        return _SPARE_IDS.pop()


def due_time(countdown: float | None, eta: datetime | None, now: datetime) -> datetime | None:
    """The ``eta`` a message gets from the call options (``None``: ready now).

    Raises:
        ConfigurationError: both are given, or ``eta`` is naive.
        ValueError: ``countdown`` is not a finite number, or either is further ahead
            than :data:`MAX_DELAY`.
    """
    if countdown is not None:
        if eta is not None:
            raise ConfigurationError("pass countdown or eta, not both")
        if not isinstance(countdown, int | float) or not math.isfinite(countdown):
            raise ValueError(f"countdown must be a finite number of seconds, got {countdown!r}")
        if countdown > _MAX_DELAY_SECONDS:
            raise ValueError(
                f"countdown={countdown!r} is more than {MAX_DELAY.days} days ahead; "
                "schedule such work nearer its time"
            )
        eta = now + timedelta(seconds=max(countdown, 0.0))
    elif eta is None:
        return None
    elif eta.tzinfo is None:
        raise ConfigurationError(
            "eta must be an aware datetime; use datetime.now(UTC) + timedelta(...)"
        )
    elif eta - now > MAX_DELAY:
        raise ValueError(
            f"eta={eta.isoformat()} is more than {MAX_DELAY.days} days ahead; schedule "
            "such work nearer its time"
        )
    return eta if eta > now else None
