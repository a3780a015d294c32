"""Time limits that stop the work: a hard limit (``timeout``) and a soft one (``soft_timeout``).

A task declares them (``@app.task(timeout=30, soft_timeout=25)``), and one call may set its
own (``apply_async(..., timeout=, soft_timeout=)``, carried in the ``chicory-timeout`` and
``chicory-soft-timeout`` headers, so every retry of that call keeps them). Both count from
the moment the function starts.

**Soft limit**: :class:`~chicory.errors.TaskSoftTimeoutError` is raised *inside* the task, at
its current ``await`` (async) or its next line of Python (sync), so it can clean up. Not
caught, it fails the attempt like any exception.

**Hard limit**: the run is stopped and the attempt fails with
:class:`~chicory.errors.TaskTimeoutError` (retried if the policy says so).

- An async task is cancelled at its current ``await``. (One that never awaits cannot be
  stopped by anything but its process ending.)
- A sync task runs in a thread, and Python cannot kill a thread: the worker raises
  :class:`~chicory.errors.TaskTimeoutError` in it, which stops Python code at its next line,
  but a thread blocked in C (``time.sleep``, a socket read) runs on until that call returns.
  **The worker waits for the thread to end** before it settles the attempt: the runner slot
  is not given to new work while the thread holds it, and the retry is published (or the
  delivery handed back) only after the thread has ended. So an overrunning sync task never
  runs beside its own retry. The cost: a thread stuck in C for an hour keeps its slot (and,
  for at-least-once work, its lease) for that hour, logged when its limit passed. The
  alternative, abandoning the thread and retrying at once, runs the same task twice at the
  same time; it is not offered. Where a stuck thread must be ended, run workers as
  ``chicory worker --processes N`` with ``--max-tasks-per-child`` or
  ``--max-memory-per-child``: stopping a child process ends its threads with it.

Nothing here runs for a task without limits: the worker calls the function directly.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Final, NamedTuple

from chicory.errors import ConfigurationError, TaskSoftTimeoutError, TaskTimeoutError

__all__ = [
    "NO_LIMITS",
    "SOFT_TIMEOUT_HEADER",
    "TIMEOUT_HEADER",
    "Limits",
    "check_limits",
    "hard_error",
    "limit_headers",
    "limits_for",
    "soft_error",
]

log = logging.getLogger("chicory.worker")

TIMEOUT_HEADER: Final = "chicory-timeout"
"""Header carrying one call's hard time limit in seconds (``apply_async(timeout=...)``)."""

SOFT_TIMEOUT_HEADER: Final = "chicory-soft-timeout"
"""Header carrying one call's soft time limit in seconds (``apply_async(soft_timeout=...)``)."""


class Limits(NamedTuple):
    """The time limits of one run, in seconds (``None``: no such limit).

    Attributes:
        hard: Stop the run after this long (``timeout``).
        soft: Raise :class:`~chicory.errors.TaskSoftTimeoutError` inside it after this long.
    """

    hard: float | None
    soft: float | None


NO_LIMITS: Final = Limits(None, None)


def check_limits(what: str, timeout: float | None, soft_timeout: float | None) -> None:
    """Check a pair of limits as a user gave them.

    Raises:
        ConfigurationError: a limit is not a positive number, or the soft limit is not below
            the hard one.
    """
    for name, value in (("timeout", timeout), ("soft_timeout", soft_timeout)):
        if value is not None and (
            type(value) not in (int, float) or not value > 0 or math.isinf(value)
        ):
            raise ConfigurationError(
                f"{what}: {name} must be a positive number of seconds, got {value!r}"
            )
    if timeout is not None and soft_timeout is not None and soft_timeout >= timeout:
        raise ConfigurationError(
            f"{what}: soft_timeout ({soft_timeout} s) must be below timeout ({timeout} s): the "
            "soft limit warns the task before the hard one stops it"
        )


def limit_headers(timeout: float | None, soft_timeout: float | None) -> dict[str, str]:
    """The headers that carry one call's limits (empty when it sets none)."""
    headers = {}
    if timeout is not None:
        headers[TIMEOUT_HEADER] = repr(float(timeout))
    if soft_timeout is not None:
        headers[SOFT_TIMEOUT_HEADER] = repr(float(soft_timeout))
    return headers


def _header_seconds(headers: Mapping[str, str], name: str) -> float | None:
    text = headers.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or math.isinf(value):
        log.warning("ignoring the %s header %r: not a positive number of seconds", name, text)
        return None
    return value


def limits_for(
    timeout: float | None, soft_timeout: float | None, headers: Mapping[str, str]
) -> Limits:
    """The limits of one run: the call's (from ``headers``) over the task's own.

    A header that is not a positive number is ignored (with a warning); a soft limit that is
    not below the hard one is dropped.
    """
    if headers and (TIMEOUT_HEADER in headers or SOFT_TIMEOUT_HEADER in headers):
        timeout = _header_seconds(headers, TIMEOUT_HEADER) or timeout
        soft_timeout = _header_seconds(headers, SOFT_TIMEOUT_HEADER) or soft_timeout
    if soft_timeout is not None and timeout is not None and soft_timeout >= timeout:
        soft_timeout = None
    if timeout is None and soft_timeout is None:
        return NO_LIMITS
    return Limits(timeout, soft_timeout)


def soft_error(limit: float) -> TaskSoftTimeoutError:
    """The exception raised inside an async task at its soft limit."""
    return TaskSoftTimeoutError(f"the task ran past its soft time limit of {limit:g} s")


def hard_error(task_name: str, limit: float) -> TaskTimeoutError:
    """The failure recorded for a run stopped at its hard limit."""
    return TaskTimeoutError(f"task {task_name!r} ran longer than its timeout of {limit:g} s")
