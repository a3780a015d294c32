"""Coalesces the settles every task needs into batches: one round trip per batch, not per task.

Three kinds of work reach the settler from the runners:

* **pre-run acks** (at-most-once): the runner waits until the batch holding its ack is
  confirmed, and runs the function only then — so an at-most-once task never starts before
  its ack is confirmed. A delivery the broker reports lost (its lease expired, so another
  worker may have it) counts as not acked: its task is not run. When a batch is confirmed,
  the flusher lets its runners resume for one loop turn before it sends anything else: those
  with quick tasks queue their next pre-ack in that turn, so the next batch is whole
  (otherwise a lone ack queued meanwhile would go first, and every following cycle would
  split in two round trips);
* **finishes**: a result record to store and, for at-least-once, an ack to send after it. The
  runner does not wait; within one flush the records are written (``store_many``) before the
  acks go out (``ack_many``), so an at-least-once ack never precedes its result;
* nothing else: retries, failures and hand-backs are rare and settled by the runner itself.

One flusher task takes everything pending whenever it is woken, so batches form naturally
under load (whatever arrives during a flush goes into the next one) and a lone task is not
delayed by a timer. At most one flush is in flight at a time.

A lone task does not even wait for the flusher to wake. When the worker is *quiet* (no
delivery waits for a runner, and another runner is idle to take the next one), the runner
sends its own settle: :meth:`Settler.send_now` after a finish, or :meth:`ack_before_run`
itself, flushes from the runner's task if no flush is in flight. That saves the event-loop
turn between the runner and the flusher on the path every lone task waits for, and costs
nothing under load: then deliveries wait in the inbox, the worker is not quiet, and the
flusher batches as before.

Flushes are shielded from cancellation and bounded by ``settle_timeout``: a drain can
neither lose nor hang them. ``kill()`` cancels the flush in flight unshielded, like a crash:
pending settles are simply never sent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import anyio

from chicory.backend import ResultBackend, StoredResult
from chicory.broker import Consumer, Delivery

__all__ = ["Settler"]

log = logging.getLogger("chicory.worker")


class _AckBatch:
    """Pre-run acks flushed together, and the runners waiting for their outcome.

    Each waiting runner awaits a future of its own (so cancelling one runner cancels only
    its future), resolved by :meth:`settle` to whether its ack was confirmed. A runner of
    quick at-most-once tasks suspends on one of these on every task, so the wait is the
    future itself: no ``anyio.Event`` (two more layers of calls on asyncio) and no
    coroutine around it.
    """

    __slots__ = ("deliveries", "lost", "ok", "waiters")

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.waiters: list[tuple[asyncio.Future[bool], Delivery]] = []
        self.ok = False  # the batch went through
        self.lost: Sequence[Delivery] = ()  # its deliveries whose lease had expired

    def settle(self, ok: bool, lost: Sequence[Delivery]) -> None:
        """Record the flush's outcome and resume the runners waiting for it."""
        self.ok, self.lost = ok, lost
        for waiter, delivery in self.waiters:
            if not waiter.done():  # done: its runner was cancelled
                waiter.set_result(self.acked(delivery))

    def acked(self, delivery: Delivery) -> bool:
        """Whether the ack of ``delivery`` was confirmed."""
        return self.ok and (not self.lost or all(lost is not delivery for lost in self.lost))


class Settler:
    """Batches pre-run acks, result writes and post-run acks for one worker.

    Args:
        consumer: The worker's consumer (``ack_many``).
        backend: The result backend (``store_many``).
        result_ttl: TTL of stored results.
        settle_timeout: Longest time one batch operation may take.
        on_settled: Called after each flushed batch with how many finished deliveries it
            settled.
        filling: Whether more runners are about to start work (see
            :meth:`chicory.worker.inbox.Inbox.handing_out`); a flush waits while it holds.
        quiet: Whether no other settle is about to join a batch, so a runner may send its
            own (see :meth:`chicory.worker.inbox.Inbox.quiet`).
        on_lost: Called with the deliveries an ack batch reported lost (their lease had
            expired) and what the ack was; without it, the settler logs one warning.
        max_batch: Most items sent in one round trip.
    """

    def __init__(
        self,
        consumer: Consumer,
        backend: ResultBackend,
        *,
        result_ttl: float,
        settle_timeout: float,
        on_settled: Callable[[int], None],
        filling: Callable[[], bool] = lambda: False,
        quiet: Callable[[], bool] = lambda: False,
        on_lost: Callable[[Sequence[Delivery], str], None] | None = None,
        max_batch: int = 1000,
    ) -> None:
        self._consumer = consumer
        self._backend = backend
        self._ttl = result_ttl
        self._timeout = settle_timeout
        self._on_settled = on_settled
        self._filling = filling
        self._quiet = quiet
        self._on_lost = on_lost
        self._max_batch = max_batch
        self._acks = _AckBatch()
        self._finishes: list[tuple[Delivery, StoredResult | None, bool]] = []
        self._wake = anyio.Event()
        self._woken = False  # ``_wake`` is set already: setting it again is a wasted call
        self._closing = False
        self._flushing = False  # a flush is in flight (the flusher's or a runner's)
        self._sent = anyio.Event()  # set when a runner's flush is done
        self._flush_scope: anyio.CancelScope | None = None

    def ack_before_run(self, delivery: Delivery) -> Awaitable[bool]:
        """Ack ``delivery`` in the next batch; the awaitable returned gives whether the ack
        was confirmed, once it was sent.

        When the worker is quiet and no flush is in flight, the batch is sent from the
        caller's task at once.
        """
        batch = self._acks
        batch.deliveries.append(delivery)
        if not self._flushing and self._quiet():
            return self._ack_from_runner(batch, delivery)
        if not self._woken:
            self._poke()
        waiter: asyncio.Future[bool] = asyncio.Future()
        batch.waiters.append((waiter, delivery))
        return waiter

    async def _ack_from_runner(self, batch: _AckBatch, delivery: Delivery) -> bool:
        await self._send_from_runner()
        return batch.acked(delivery)

    def finish(self, delivery: Delivery, record: StoredResult | None, *, ack: bool) -> None:
        """Queue ``record`` to be stored and then, if ``ack``, ``delivery`` to be acked."""
        self._finishes.append((delivery, record, ack))
        if not self._woken:  # the check, not the call: this runs once per task
            self._poke()

    async def send_now(self) -> None:
        """Send what is pending from the caller's task, if the worker is quiet and no flush
        is in flight; otherwise leave it to the flusher (it was woken by :meth:`finish`)."""
        if not self._flushing and self._quiet() and (self._finishes or self._acks.deliveries):
            await self._send_from_runner()

    def close(self) -> None:
        """Flush what is pending, then make :meth:`run` return."""
        self._closing = True
        self._poke()

    def kill(self) -> None:
        """Abandon the flush in progress, as a crash would (for ``Worker.kill``)."""
        if self._flush_scope is not None:
            self._flush_scope.shield = False
            self._flush_scope.cancel()

    def _poke(self) -> None:
        self._woken = True
        self._wake.set()

    async def run(self) -> None:
        """Flush batches until :meth:`close` was called and nothing is pending."""
        while True:
            if self._flushing:  # a runner's flush: what arrives meanwhile is the next batch
                await self._sent.wait()
                continue
            if not self._acks.deliveries and not self._finishes:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake = anyio.Event()
                self._woken = False
                # Runners being woken one after another (a fetched batch fanning out) will
                # each queue a settle within a loop turn or two: let them join this batch.
                while self._filling():
                    await anyio.lowlevel.checkpoint()
                continue
            if await self._flush():
                # The runners of the confirmed pre-acks resume in the next loop turn; those
                # with quick tasks take their next delivery and queue its pre-ack right
                # away. Let them, so those acks go in one batch, not behind a lone one.
                await anyio.lowlevel.checkpoint()

    async def _send_from_runner(self) -> None:
        self._sent = anyio.Event()
        try:
            await self._flush()
        finally:
            self._sent.set()

    async def _flush(self) -> bool:
        """Send the pending pre-run acks and up to ``max_batch`` finishes, shielded.

        Returns:
            Whether pre-run acks were sent (their runners are about to resume).
        """
        self._flushing = True
        acks, self._acks = self._acks, _AckBatch()
        finishes = self._finishes[: self._max_batch]
        del self._finishes[: self._max_batch]
        try:
            with anyio.CancelScope(shield=True) as self._flush_scope:
                if acks.deliveries:
                    await self._flush_acks(acks)
                if finishes:
                    await self._flush_finishes(finishes)
        finally:
            self._flushing = False
        return bool(acks.deliveries)

    async def _flush_acks(self, batch: _AckBatch) -> None:
        batch.settle(*await self._ack(batch.deliveries, "pre-run ack"))

    async def _ack(self, deliveries: list[Delivery], what: str) -> tuple[bool, Sequence[Delivery]]:
        """``ack_many``, bounded; whether it went through, and the deliveries it reported
        lost (their lease had expired: another worker may run them)."""
        lost: Sequence[Delivery] | None = None

        async def ack() -> None:
            nonlocal lost
            lost = await self._consumer.ack_many(deliveries)

        ok = await self._bounded(ack(), what, len(deliveries))
        if ok and lost and self._on_lost is not None:
            self._on_lost(lost, what)
        elif ok and lost:
            log.warning(
                "%s of %d deliveries: %d had lost their lease (not settled for longer than "
                "the broker's lease time), so another worker may run them; renew leases more "
                "often than the lease time",
                what,
                len(deliveries),
                len(lost),
            )
        return ok, lost or ()

    async def _flush_finishes(
        self, items: list[tuple[Delivery, StoredResult | None, bool]]
    ) -> None:
        records = [record for _, record, _ in items if record is not None]
        stored = True
        if records:
            stored = await self._bounded(
                self._backend.store_many(records, ttl=self._ttl), "result write", len(records)
            )
        to_ack = [d for d, record, ack in items if ack and (stored or record is None)]
        if to_ack:
            await self._ack(to_ack, "ack")
        if not stored:
            for delivery, record, ack in items:
                if ack and record is not None:  # never ack work whose result was not stored
                    await self._bounded(delivery.nack(requeue=True), "hand back", 1)
        self._on_settled(len(items))

    async def _bounded(self, operation: Any, what: str, count: int) -> bool:
        with anyio.move_on_after(self._timeout) as scope:
            try:
                await operation
            except Exception:
                log.exception("%s of %d deliveries failed", what, count)
                return False
        if scope.cancelled_caught:
            log.error("%s of %d deliveries timed out after %.1f s", what, count, self._timeout)
            return False
        return True
