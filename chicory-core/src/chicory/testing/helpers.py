"""Small async helpers shared by the conformance suites.

Every failure they raise says, in words, what was expected and what the broker did.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Final

import anyio

from chicory.broker import Broker, Consumer, Delivery, QueueCounts
from chicory.clock import utcnow

__all__ = [
    "QUIET",
    "bodies",
    "describe",
    "expect_counts",
    "fetch_exactly",
    "fetch_none",
    "fetch_none_before",
    "in_seconds",
    "publish_unique",
    "wait_until",
]

QUIET: Final = 0.3
"""Seconds a test listens to conclude that nothing (more) is delivered."""


def describe(deliveries: Sequence[Delivery]) -> str:
    """Deliveries for a failure message: body (cut to 40 bytes) and delivery count each."""
    if not deliveries:
        return "nothing"
    shown = ", ".join(f"{d.body[:40]!r} (delivery {d.delivery_count})" for d in deliveries[:10])
    more = f" and {len(deliveries) - 10} more" if len(deliveries) > 10 else ""
    return shown + more


async def fetch_exactly(
    consumer: Consumer, count: int, *, within: float = 5.0, what: str = ""
) -> list[Delivery]:
    """Fetch until ``count`` deliveries arrived; fail if they do not within ``within`` seconds.

    Raises:
        AssertionError: fewer than ``count`` arrived in time.
    """
    got: list[Delivery] = []
    deadline = anyio.current_time() + within
    while len(got) < count:
        remaining = deadline - anyio.current_time()
        if remaining <= 0:
            break
        got.extend(await consumer.fetch(count - len(got), timeout=remaining))
    assert len(got) >= count, (
        f"expected {count} deliver{'y' if count == 1 else 'ies'}{' ' + what if what else ''} "
        f"within {within:g} s; the broker delivered {len(got)}: {describe(got)}"
    )
    return got


async def fetch_none(consumer: Consumer, *, wait: float = QUIET, what: str = "") -> None:
    """Listen for ``wait`` seconds; fail if anything is delivered.

    Raises:
        AssertionError: something was delivered.
    """
    got = await consumer.fetch(100, timeout=wait)
    assert not got, (
        f"expected no delivery{' ' + what if what else ''}; the broker delivered {describe(got)}"
    )


async def fetch_none_before(consumer: Consumer, moment: datetime, *, what: str) -> None:
    """Listen until shortly before ``moment`` (at most 0.8 s); fail if anything is delivered.

    Raises:
        AssertionError: something was delivered.
    """
    window = min(0.8, (moment - utcnow()).total_seconds() - 0.2)
    if window > 0:
        await fetch_none(consumer, wait=window, what=what)


async def expect_counts(broker: Broker, queue: str, *, what: str, **expected: int) -> QueueCounts:
    """Read ``queue``'s counts and fail unless the named ones have the expected values.

    Raises:
        AssertionError: a count differs (the message lists every one of them).
    """
    counts = await broker.counts(queue)
    actual = {name: getattr(counts, name) for name in expected}
    assert actual == expected, (
        f"{what}: expected counts {_show(expected)}; the broker counts {_show(actual)} "
        f"(all counts: {counts})"
    )
    return counts


def _show(counts: dict[str, int]) -> str:
    return ", ".join(f"{name}={value}" for name, value in counts.items())


async def publish_unique(broker: Broker, queue: str, count: int, prefix: str = "m") -> list[bytes]:
    """Publish ``count`` distinct bodies ``b"<prefix>-0"``... and return them in order."""
    bodies = [f"{prefix}-{i}".encode() for i in range(count)]
    for body in bodies:
        await broker.publish(queue, body, {})
    return bodies


async def wait_until(
    check: Callable[[], Awaitable[bool]], *, within: float, what: str, step: float = 0.05
) -> None:
    """Re-check ``check`` until it holds; fail with ``what`` if it does not within ``within``.

    Raises:
        AssertionError: the condition never held.
    """
    with anyio.move_on_after(within):
        while True:
            if await check():
                return
            await anyio.sleep(step)
    raise AssertionError(f"expected {what} within {within:g} s; it did not happen")


def in_seconds(seconds: float) -> datetime:
    """An aware-UTC datetime ``seconds`` from now."""
    return utcnow() + timedelta(seconds=seconds)


def bodies(deliveries: Sequence[Delivery]) -> list[bytes]:
    """The bodies of ``deliveries`` in order."""
    return [d.body for d in deliveries]
