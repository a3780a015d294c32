"""Retry policies: backoff shapes, caps, jitter and which exceptions are retried."""

from __future__ import annotations

import pytest

from chicory import RetryPolicy


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [
        ("fixed", [2.0, 2.0, 2.0, 2.0]),
        ("linear", [2.0, 4.0, 6.0, 8.0]),
        ("exponential", [2.0, 4.0, 8.0, 10.0]),
    ],
)
def test_backoff_shapes_and_cap(backoff: str, expected: list[float]) -> None:
    policy = RetryPolicy(backoff=backoff, delay=2.0, max_delay=10.0)  # type: ignore[arg-type]
    assert [policy.delay_for(n) for n in range(1, 5)] == expected


def test_jitter_stays_between_half_and_full_delay() -> None:
    policy = RetryPolicy(backoff="fixed", delay=8.0, jitter=True)
    assert policy.delay_for(1, rand=lambda: 0.0) == 4.0
    assert policy.delay_for(1, rand=lambda: 1.0) == 8.0


def test_huge_retry_numbers_do_not_overflow() -> None:
    assert RetryPolicy(delay=1.0, max_delay=60.0).delay_for(10_000) == 60.0


def test_retry_on_and_ignore_on() -> None:
    policy = RetryPolicy(
        max_retries=3, retry_on=(ConnectionError,), ignore_on=(ConnectionResetError,)
    )
    assert policy.should_retry(ConnectionError(), attempt=1)
    assert not policy.should_retry(ConnectionResetError(), attempt=1)
    assert not policy.should_retry(ValueError(), attempt=1)


def test_max_retries_bounds_attempts() -> None:
    policy = RetryPolicy(max_retries=2)
    assert policy.should_retry(RuntimeError(), attempt=2)
    assert not policy.should_retry(RuntimeError(), attempt=3)
    assert [policy.retries_left(a) for a in (1, 2, 3)] == [2, 1, 0]
    assert not RetryPolicy.never().should_retry(RuntimeError(), attempt=1)


def test_bad_policies_are_rejected() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError):
        RetryPolicy(backoff="random")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exception classes"):
        RetryPolicy(retry_on=("ValueError",))  # type: ignore[arg-type]
