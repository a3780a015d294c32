"""When and how often the worker sends a failed settle again.

A settle (an ack, a hand-back, a dead-letter, a result write) that fails because the broker
or result backend could not be reached, or did not answer in time, has an *unknown*
outcome: it may have taken effect with only the reply lost. Leaving the delivery alone
would keep it unsettled until its lease runs out, holding a prefetch slot and then running
it again elsewhere; so the worker sends it again, after a short pause that doubles up to
:data:`PAUSE_MAX`, until it goes through. That is safe because brokers treat a second
settle of a delivery as a no-op (and report a delivery they no longer hold as lost, so an
at-most-once task whose pre-run ack comes back that way is not run), and a result write
only replaces a record with the same one.

What is *not* sent again: a publish whose outcome is unknown
(:class:`~chicory.errors.PublishOutcomeUnknownError`: an at-most-once retry publishes the
next attempt, and sending it twice could run it twice), and errors that another try cannot
fix (the consumer was closed, a capability is missing, a programming error).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

from chicory.errors import (
    BrokerError,
    CapabilityError,
    DeliveryStateError,
    PublishOutcomeUnknownError,
    ResultBackendError,
)

__all__ = ["PAUSE_FIRST", "PAUSE_MAX", "attempt", "pause", "until_done", "worth_retrying"]

log = logging.getLogger("chicory.worker")

PAUSE_FIRST: Final = 0.05
"""Seconds before the first repeat of a failed settle."""

PAUSE_MAX: Final = 1.0
"""Longest pause between repeats: how late, at most, settling resumes after the broker
answers again."""


def worth_retrying(error: BaseException) -> bool:
    """Whether a settle that failed with ``error`` may go through if sent again."""
    if isinstance(error, DeliveryStateError | CapabilityError | PublishOutcomeUnknownError):
        return False
    return isinstance(error, BrokerError | ResultBackendError | OSError | TimeoutError)


def pause(failures: int) -> float:
    """Seconds to wait after ``failures`` failed attempts in a row (with jitter)."""
    longest = min(PAUSE_MAX, PAUSE_FIRST * 2.0 ** min(failures - 1, 20))
    return longest * random.uniform(0.5, 1.0)


async def attempt(operation: Awaitable[object], timeout: float) -> BaseException | None:
    """Await ``operation`` for at most ``timeout`` seconds.

    Returns:
        ``None`` if it succeeded; the exception it raised, or a ``TimeoutError`` if it took
        too long (it was cancelled, so its outcome is unknown).
    """
    with anyio.move_on_after(timeout) as scope:
        try:
            await operation
        except Exception as exc:
            return exc
    if scope.cancelled_caught:
        return TimeoutError(f"no answer within {timeout:.1f} s")
    return None


async def until_done(
    operation: Callable[[], Awaitable[object]],
    *,
    what: str,
    timeout: float,
    stopping: Callable[[], bool],
    killed: Callable[[], bool],
) -> bool:
    """Run ``operation()`` shielded, each try bounded by ``timeout``, until it succeeds.

    A failure worth retrying is tried again after a :func:`pause`, for as long as it takes,
    or, once ``stopping()`` holds, for at most ``timeout`` more seconds; ``killed()`` stops
    at once. The caller (a runner) waits meanwhile, holding its slot, instead of leaving
    the delivery unsettled until its lease runs out.

    Args:
        operation: Makes the awaitable of one try.
        what: What it does, for the logs ("dead-letter of task 1f3c...").
        timeout: Longest single try, and how long tries go on once stopping.
        stopping: Whether the worker is stopping.
        killed: Whether the worker was killed.

    Returns:
        Whether it went through.
    """
    failures = 0
    stop_at = float("inf")
    with anyio.CancelScope(shield=True):
        while True:
            error = await attempt(operation(), timeout)
            if error is None:
                if failures:
                    log.info("%s went through after %d failure(s)", what, failures)
                return True
            if stopping() and stop_at == float("inf"):
                stop_at = anyio.current_time() + timeout
            retry = worth_retrying(error)
            if killed() or not retry or anyio.current_time() >= stop_at:
                log.error(
                    "%s failed: %s: %s",
                    what,
                    type(error).__name__,
                    error,
                    exc_info=None if retry else error,
                )
                return False
            failures += 1
            if failures == 1:
                log.warning(
                    "%s failed (%s: %s); trying again until it goes through",
                    what,
                    type(error).__name__,
                    error,
                )
            await anyio.sleep(pause(failures))
    return False  # not reached: the shielded scope is never cancelled
