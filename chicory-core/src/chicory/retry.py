"""Retry policies: how many times a failing task is tried again, and how long to wait."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any, Literal

import attrs

__all__ = ["Backoff", "RetryPolicy"]

Backoff = Literal["fixed", "linear", "exponential"]


def _check_classes(_instance: Any, attribute: Any, value: tuple[Any, ...]) -> None:
    for item in value:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise TypeError(f"{attribute.name} must hold exception classes, got {item!r}")


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When and how a failing task is retried.

    The delay before retry number ``n`` (1-based) is ``delay`` for ``fixed``, ``delay * n``
    for ``linear`` and ``delay * 2 ** (n - 1)`` for ``exponential``, capped at ``max_delay``;
    with ``jitter`` it is then drawn uniformly from ``[delay / 2, delay]`` so that many failing
    tasks do not retry in lock-step.

    Args:
        max_retries: Retries after the first attempt (0 disables retrying).
        backoff: ``"fixed"``, ``"linear"`` or ``"exponential"``.
        delay: Base delay in seconds.
        max_delay: Upper bound of any delay in seconds.
        jitter: Randomise delays as described above.
        retry_on: Only these exception classes are retried (default: any ``Exception``).
        ignore_on: These exception classes are never retried (checked first).
    """

    max_retries: int = attrs.field(default=3, validator=attrs.validators.ge(0))
    backoff: Backoff = attrs.field(
        default="exponential", validator=attrs.validators.in_(("fixed", "linear", "exponential"))
    )
    delay: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    max_delay: float = attrs.field(default=300.0, validator=attrs.validators.ge(0))
    jitter: bool = False
    retry_on: tuple[type[BaseException], ...] = attrs.field(
        default=(Exception,), converter=tuple, validator=_check_classes
    )
    ignore_on: tuple[type[BaseException], ...] = attrs.field(
        default=(), converter=tuple, validator=_check_classes
    )

    @classmethod
    def never(cls) -> RetryPolicy:
        """A policy that never retries."""
        return cls(max_retries=0)

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        """Whether a failure of attempt ``attempt`` (1-based) with ``exc`` is retried."""
        if attempt > self.max_retries:
            return False
        if isinstance(exc, self.ignore_on):
            return False
        return isinstance(exc, self.retry_on)

    def retries_left(self, attempt: int) -> int:
        """How many retries remain after attempt ``attempt`` (1-based)."""
        return max(0, self.max_retries - attempt + 1)

    def delay_for(self, retry_number: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry ``retry_number`` (1-based)."""
        n = max(1, retry_number)
        if self.backoff == "fixed":
            base = self.delay
        elif self.backoff == "linear":
            base = self.delay * n
        else:
            base = self.delay * 2.0 ** min(n - 1, 64)
        base = min(base, self.max_delay)
        if self.jitter:
            base = base / 2 + rand() * base / 2
        return base
