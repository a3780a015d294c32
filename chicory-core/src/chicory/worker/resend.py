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

import random
from collections.abc import Awaitable
from typing import Final

import anyio

from chicory.errors import (
    BrokerError,
    CapabilityError,
    DeliveryStateError,
    PublishOutcomeUnknownError,
    ResultBackendError,
)

__all__ = ["PAUSE_FIRST", "PAUSE_MAX", "attempt", "pause", "worth_retrying"]

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
