"""chicory.testkit: users' own tasks under an in-process worker, a virtual clock, eager mode.

Written the way the documentation tells users to write theirs: the app is defined once
(here in this module, elsewhere in the user's project), with a real broker URL, and the
tests only use ``chicory.testkit``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chicory import (
    ArgumentValidationError,
    Chicory,
    DeliveryMode,
    RetryPolicy,
    TaskContext,
    TaskFailedError,
    TaskState,
)
from chicory.testkit import BlockingLocalWorker, LocalWorker

app = Chicory("redis://127.0.0.1:6379/0?key_prefix=t-testkit-never-used", load_entry_points=True)
attempts: list[int] = []
seen_in_flight: dict[str, int] = {}


@app.task(
    name="shop.charge",
    retry_policy=RetryPolicy(max_retries=5, backoff="fixed", delay=60, jitter=False),
)
async def charge(ctx: TaskContext, order: str, amount: float) -> str:
    attempts.append(ctx.attempt)
    if ctx.attempt < 4:
        raise ConnectionError("payment gateway timeout")
    return f"{order}: charged {amount}"


@app.task(name="shop.remind")
def remind(email: str) -> str:
    return f"reminded {email}"


@app.task(name="shop.checkout")
async def checkout(order: str) -> str:
    await remind.delay(f"{order}@example.com")
    return order


async def in_flight_now() -> int:
    return (await app.broker.counts("default")).in_flight


@app.task(name="shop.log", delivery_mode=DeliveryMode.AT_MOST_ONCE)
async def log_event(event: str) -> None:
    seen_in_flight[event] = await in_flight_now()


@app.task(name="shop.audit", delivery_mode=DeliveryMode.AT_LEAST_ONCE)
async def audit(event: str) -> None:
    seen_in_flight[event] = await in_flight_now()


@app.task(name="shop.refund", retry_policy=RetryPolicy(max_retries=0))
async def refund(order: str) -> None:
    raise ValueError(f"order {order} was never charged")


@pytest.fixture
async def local() -> AsyncIterator[LocalWorker]:
    attempts.clear()
    async with LocalWorker(app) as worker:
        yield worker


async def test_retries_with_a_60_s_backoff_run_without_waiting(local: LocalWorker) -> None:
    result = await charge.delay("o-1", 9.5)
    await local.run_until_idle(timeout=5)  # three 60 s backoffs: the clock jumps over them
    assert await result.get(timeout=0) == "o-1: charged 9.5"
    assert attempts == [1, 2, 3, 4]
    assert local.clock.offset > 170  # three backoffs of 60 s, minus the real time they took


async def test_time_moves_only_when_told(local: LocalWorker) -> None:
    result = await remind.apply_async(("a@example.com",), countdown=3600)
    await local.run_until_idle(advance_time=False)
    assert await result.state() is TaskState.PENDING
    local.clock.advance(3599)
    await local.run_until_idle(advance_time=False)
    assert await result.state() is TaskState.PENDING
    local.clock.advance(1)
    await local.run_until_idle(advance_time=False)
    assert await result.get(timeout=0) == "reminded a@example.com"


async def test_failures_and_what_tasks_enqueue(local: LocalWorker) -> None:
    failed = await refund.delay("o-2")
    done = await checkout.delay("o-3")
    await local.run_until_idle()
    with pytest.raises(TaskFailedError, match="never charged"):
        await failed.get(timeout=0)
    assert (await app.broker.counts("default")).dead == 1
    assert await done.get(timeout=0) == "o-3"
    assert (await app.broker.counts("default")).ready == 0  # the reminder ran too


async def test_a_task_cancelled_while_it_waits_does_not_run(local: LocalWorker) -> None:
    """The worker follows the revocations of the backend the test runs on, not of the one
    the app had before the LocalWorker replaced it."""
    later = await remind.apply_async(("b@example.com",), countdown=3600)
    await later.cancel()
    await local.run_until_idle()  # the clock jumps to the reminder's time
    assert await later.state() is TaskState.CANCELLED


async def test_the_app_gets_its_own_broker_back() -> None:
    broker, backend = app.broker, app.backend
    async with LocalWorker(app):
        assert app.broker is not broker
    assert app.broker is broker
    assert app.backend is backend


async def test_eager_delay_returns_after_the_task_and_its_retries_ran() -> None:
    attempts.clear()
    async with LocalWorker(app, eager=True):
        result = await charge.delay("o-4", 1.0)
        assert attempts == [1, 2, 3, 4]
        assert await result.get(timeout=0) == "o-4: charged 1.0"
        assert await (await checkout.delay("o-5")).get(timeout=0) == "o-5"


async def test_eager_mode_keeps_the_delivery_modes_and_the_wire_checks() -> None:
    """Eager tasks go through the worker: an at-most-once task is acked before it runs, an
    at-least-once one only after; arguments are still validated at delay()."""
    async with LocalWorker(app, eager=True):
        await log_event.delay("logged")
        await audit.delay("audited")
        with pytest.raises(ArgumentValidationError):
            await charge.delay("o-6", "not a number")  # type: ignore[arg-type]
    assert seen_in_flight == {"logged": 0, "audited": 1}


def test_blocking_local_worker_for_synchronous_code() -> None:
    attempts.clear()
    with BlockingLocalWorker(app) as local:
        result = charge.blocking.delay("o-7", 2.0)
        local.run_until_idle()
        assert result.get(timeout=0) == "o-7: charged 2.0"
        assert local.clock.offset > 170  # three backoffs of 60 s, minus the real time they took
    with BlockingLocalWorker(app, eager=True):
        assert remind.blocking.delay("b@example.com").get(timeout=0) == "reminded b@example.com"
