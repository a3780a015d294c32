"""Ack strategies: *when* a delivery is settled, one small class per delivery mode.

The worker state machine (:mod:`chicory.worker.states`) calls the strategy of a job's
delivery mode at fixed lifecycle points; this module is the delivery-mode rules as code:

- ``before_run``: AT_MOST_ONCE acks (if the ack fails, the task is not run);
  AT_LEAST_ONCE does nothing (the delivery is held and its lease renewed while running).
- ``after_success``: AT_MOST_ONCE does nothing (acked already); AT_LEAST_ONCE acks (the
  result was stored first).
- ``retry``: AT_MOST_ONCE publishes the next attempt; AT_LEAST_ONCE calls
  ``Delivery.retry`` (publish it and ack, atomically where the broker can).
- ``fail``: AT_MOST_ONCE dead-letters a copy (acked already); AT_LEAST_ONCE dead-letters,
  which settles the delivery.
- ``abandon`` (a drain ran out of time): AT_MOST_ONCE does nothing, so the task is lost by
  design; AT_LEAST_ONCE hands it back now with ``nack(requeue=True)``.

Poison messages (undecodable, unknown task, bad arguments) are dead-lettered before any
strategy is chosen, and work that never started is handed back, identically for both modes;
the worker does that itself.

Adding a delivery mode means adding a strategy here, not editing the worker.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from datetime import datetime
from typing import Final, Protocol

from chicory.backend import StoredResult
from chicory.broker import Broker, Delivery
from chicory.modes import DeliveryMode
from chicory.worker.settler import Settler

__all__ = ["STRATEGIES", "AckStrategy", "AtLeastOnce", "AtMostOnce"]


class AckStrategy(Protocol):
    """Settles a job's delivery at the worker's lifecycle points.

    Every method may raise broker errors; the worker logs them and applies the mode's
    guarantee (for example, an at-most-once task whose pre-ack failed is not run).
    """

    holds_lease: bool
    """Whether the delivery stays unsettled while the function runs (so needs renewal)."""

    acts_before_run: bool
    """Whether :meth:`before_run` does anything (if not, the worker skips the call)."""

    def before_run(self, delivery: Delivery, settler: Settler) -> Awaitable[bool]:
        """Called right before the function starts; the function runs only if the awaitable
        it returns gives True."""
        ...

    def after_success(
        self, delivery: Delivery, record: StoredResult | None, settler: Settler
    ) -> None:
        """Called after the function returned, with its result record to store (if any)."""
        ...

    async def retry(
        self,
        delivery: Delivery,
        broker: Broker,
        body: bytes,
        headers: Mapping[str, str],
        not_before: datetime | None,
    ) -> None:
        """Called when the function failed and another attempt is due."""
        ...

    async def fail(self, delivery: Delivery, reason: str) -> None:
        """Called when the task failed for good (its failure was recorded first)."""
        ...

    async def abandon(self, delivery: Delivery) -> None:
        """Called when a running job is cancelled by a drain that ran out of time."""
        ...


class AtMostOnce:
    """Ack before running: a crash mid-task loses the task, nothing ever runs twice."""

    holds_lease = False
    acts_before_run = True

    def before_run(self, delivery: Delivery, settler: Settler) -> Awaitable[bool]:
        """Ack (batched with other pre-run acks) and wait until the ack is confirmed.

        Returns the settler's coroutine itself, not one wrapping it: a runner of quick tasks
        resumes through every frame of this await on every task.
        """
        return settler.ack_before_run(delivery)

    def after_success(
        self, delivery: Delivery, record: StoredResult | None, settler: Settler
    ) -> None:
        """Store the result; there is nothing to ack (it was acked before the run)."""
        settler.finish(delivery, record, ack=False)

    async def retry(
        self,
        delivery: Delivery,
        broker: Broker,
        body: bytes,
        headers: Mapping[str, str],
        not_before: datetime | None,
    ) -> None:
        """Publish the next attempt as a new message."""
        await broker.publish(delivery.queue, body, headers, not_before=not_before)

    async def fail(self, delivery: Delivery, reason: str) -> None:
        """Record a dead-letter copy with ``reason``."""
        await delivery.dead_letter(reason)

    async def abandon(self, delivery: Delivery) -> None:
        """Nothing: the task was acked before it started, so it is lost by design."""


class AtLeastOnce:
    """Ack after running and storing the result: never lost, may run twice after a crash."""

    holds_lease = True
    acts_before_run = False

    async def before_run(self, delivery: Delivery, settler: Settler) -> bool:
        """Nothing: the delivery is held (and its lease renewed) while the function runs."""
        return True

    def after_success(
        self, delivery: Delivery, record: StoredResult | None, settler: Settler
    ) -> None:
        """Store the result, then ack (in that order, batched with other tasks' settles)."""
        settler.finish(delivery, record, ack=True)

    async def retry(
        self,
        delivery: Delivery,
        broker: Broker,
        body: bytes,
        headers: Mapping[str, str],
        not_before: datetime | None,
    ) -> None:
        """Publish the next attempt and ack this one (atomically where the broker can)."""
        await delivery.retry(body, headers, not_before=not_before)

    async def fail(self, delivery: Delivery, reason: str) -> None:
        """Dead-letter with ``reason``; that settles the delivery."""
        await delivery.dead_letter(reason)

    async def abandon(self, delivery: Delivery) -> None:
        """Hand the delivery back now so another worker runs it without waiting for a lease."""
        await delivery.nack(requeue=True)


STRATEGIES: Final[Mapping[DeliveryMode, AckStrategy]] = {
    DeliveryMode.AT_MOST_ONCE: AtMostOnce(),
    DeliveryMode.AT_LEAST_ONCE: AtLeastOnce(),
}
"""The strategy for each delivery mode."""
