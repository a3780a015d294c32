"""What one settler flush sends, in which order, and what it does when a send fails.

The steps :class:`~chicory.worker.settler.Settler` runs inside a flush (it decides *when* to
flush and batches what the runners queue; these decide *what goes out*):

* pre-run acks: one ``ack_many``; a batch whose send failed for a reason worth retrying
  (:func:`chicory.worker.resend.worth_retrying`) moves, with its waiting runners, in front of
  the next batch; otherwise its runners learn whether their ack was confirmed (a delivery
  whose lease was lost counts as not acked);
* finishes: the records first (one ``store_many`` per result ttl in the batch), then the
  at-least-once acks. A record whose write failed for good is never acked: its delivery is
  handed back. A failure worth retrying puts what is left in front of the pending finishes
  (records already stored are not stored again);
* every send is bounded by ``settle_timeout`` (a send that takes longer counts as failed
  with a ``TimeoutError``), and a failure that is not sent again is logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from chicory.backend import ResultBackend
from chicory.broker import Consumer, Delivery
from chicory.worker.batches import AckBatch, Finish, by_ttl
from chicory.worker.resend import worth_retrying

__all__ = ["SettleSending"]

log = logging.getLogger("chicory.worker")


class SettleSending:
    """The sending steps of a flush of :class:`~chicory.worker.settler.Settler`."""

    _consumer: Consumer
    _backend: ResultBackend
    _timeout: float
    _on_settled: Callable[[int], None]
    _on_lost: Callable[[Sequence[Delivery], str], None] | None
    _acks: AckBatch
    _finishes: list[Finish]
    _after: dict[Delivery, Callable[[], Awaitable[None]]]
    _closing: bool
    _give_up_at: float
    _killed: bool

    def _retrying(self, error: BaseException | None) -> bool:
        """Whether a flush that failed with ``error`` is sent again."""
        return error is not None and worth_retrying(error) and not self._giving_up()

    def _giving_up(self) -> bool:
        """Whether failed settles are no longer sent again (killed, or closed too long)."""
        return self._killed or (self._closing and anyio.current_time() >= self._give_up_at)

    async def _flush_acks(self, batch: AckBatch) -> BaseException | None:
        """Send pre-run acks; on a failure worth retrying, move them to the next batch."""
        error, lost = await self._ack(batch.deliveries, "pre-run ack")
        if self._retrying(error):
            batch.move_into(self._acks)
            return error
        batch.settle(error is None, lost)
        return None

    async def _ack(
        self, deliveries: list[Delivery], what: str
    ) -> tuple[BaseException | None, Sequence[Delivery]]:
        """``ack_many``, bounded; its error (``None`` if it went through), and the
        deliveries it reported lost (their lease had expired: another worker may run
        them)."""
        lost: Sequence[Delivery] | None = None

        async def ack() -> None:
            nonlocal lost
            lost = await self._consumer.ack_many(deliveries)

        error = await self._bounded(ack(), what, len(deliveries))
        if error is None and lost and self._on_lost is not None:
            self._on_lost(lost, what)
        elif error is None and lost:
            log.warning(
                "%s of %d deliveries: %d had lost their lease (not settled for longer than "
                "the broker's lease time), so another worker may run them; renew leases more "
                "often than the lease time",
                what,
                len(deliveries),
                len(lost),
            )
        return error, lost or ()

    async def _flush_finishes(self, items: list[Finish]) -> BaseException | None:
        """Store records, then ack; on a failure worth retrying, put back what is left."""
        total = len(items)
        records = [record for _, record, _, _ in items if record is not None]
        if records:
            ttl = items[0][3]
            if len({item[3] for item in items}) == 1:  # one ttl: one store_many
                error = await self._bounded(
                    self._backend.store_many(records, ttl=ttl), "result write", len(records)
                )
            else:
                error = await self._store_by_ttl(items)
            if self._retrying(error):
                self._finishes[:0] = items
                return error
            if error is not None:  # never ack work whose result was not stored: hand it back
                for delivery, record, ack, _ in items:
                    if ack and record is not None:
                        self._after.pop(delivery, None)
                        await self._bounded(delivery.nack(requeue=True), "hand back", 1)
                items = [item for item in items if item[1] is None]
        to_ack = [d for d, _, ack, _ in items if ack]
        if to_ack:
            error, _ = await self._ack(to_ack, "ack")
            if self._retrying(error):
                stored = [(d, None, True, 0.0) for d in to_ack]
                self._finishes[:0] = stored
                if total > len(to_ack):
                    self._on_settled(total - len(to_ack))
                return error
        if self._after:
            await self._then(items)
        self._on_settled(total)
        return None

    async def _then(self, items: list[Finish]) -> None:
        """Run the :meth:`after_settled` callbacks of settled ``items``."""
        for delivery, _, _, _ in items:
            then = self._after.pop(delivery, None)
            if then is not None:
                await self._bounded(then(), "after settling", 1)

    async def _store_by_ttl(self, items: list[Finish]) -> BaseException | None:
        """One ``store_many`` per ttl, when tasks with a ``result_ttl`` of their own
        finished in the same batch (each record is kept for its own task's time)."""
        records = [(record, ttl) for _, record, _, ttl in items if record is not None]
        error: BaseException | None = None
        for batch, ttl in by_ttl(records):
            failed = await self._bounded(
                self._backend.store_many(batch, ttl=ttl), "result write", len(batch)
            )
            error = error or failed
        return error

    async def _bounded(self, operation: Any, what: str, count: int) -> BaseException | None:
        """Await a settle for at most ``settle_timeout``; its error (a ``TimeoutError``
        when it took too long), or ``None``. (:func:`resend.attempt`, inlined: this runs
        for every batch.)"""
        error: BaseException | None = None
        with anyio.move_on_after(self._timeout) as scope:
            try:
                await operation
            except Exception as exc:
                error = exc
        if scope.cancelled_caught:
            error = TimeoutError(f"no answer within {self._timeout:.1f} s")
        if error is not None and not self._retrying(error):
            log.error(
                "%s of %d deliveries failed: %s: %s",
                what,
                count,
                type(error).__name__,
                error,
                exc_info=not worth_retrying(error),
            )
        return error
