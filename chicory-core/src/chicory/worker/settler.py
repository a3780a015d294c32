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
delayed by a timer. At most one flush is in flight at a time. What a flush sends, in which
order, and what it does with a send that fails is :mod:`chicory.worker.sending`.

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

A flush that fails because the broker or the result backend could not be reached (or did
not answer in time) is sent again (:mod:`chicory.worker.resend`): its items go back in
front of the pending ones, the flusher pauses (0.05 s, doubling up to 1 s), and the next
batch carries them. A delivery is never left unsettled for its lease to run out just
because a settle failed once: that would hold its prefetch slot for the whole lease and
then run it again elsewhere. Each item keeps its order: a record stored is not stored
again, an at-least-once ack still follows its record, and the runners of pre-run acks keep
waiting, so an at-most-once task whose ack finally goes through runs (once), and one whose
ack comes back lost (its lease ran out meanwhile) does not. After :meth:`close`, retries
stop ``settle_timeout`` later; what is still unsettled then is handed back by the consumer
as it closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import anyio

from chicory.backend import ResultBackend, StoredResult
from chicory.broker import Consumer, Delivery
from chicory.worker.batches import AckBatch, Finish
from chicory.worker.resend import pause
from chicory.worker.sending import SettleSending

__all__ = ["Settler"]


log = logging.getLogger("chicory.worker")


class Settler(SettleSending):
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
        self._acks = AckBatch()
        self._finishes: list[Finish] = []
        self._wake = anyio.Event()
        self._woken = False  # ``_wake`` is set already: setting it again is a wasted call
        self._closing = False
        self._flushing = False  # a flush is in flight (the flusher's or a runner's)
        self._sent = anyio.Event()  # set when a runner's flush is done
        self._flush_scope: anyio.CancelScope | None = None
        self._failures = 0  # flushes in a row that failed and are being sent again
        self._resume_at = 0.0  # after a failed flush: nothing is sent before this time
        self._give_up_at = float("inf")  # after close(): when retrying stops
        self._killed = False
        self._after: dict[Delivery, Callable[[], Awaitable[None]]] = {}

    def after_settled(self, delivery: Delivery, then: Callable[[], Awaitable[None]]) -> None:
        """Call ``then`` once the finish queued for ``delivery`` is stored and settled (not
        if it is handed back instead). Called before :meth:`finish`'s batch is flushed."""
        self._after[delivery] = then

    def ack_before_run(self, delivery: Delivery) -> Awaitable[bool]:
        """Ack ``delivery`` in the next batch; the awaitable returned gives whether the ack
        was confirmed, once it was sent.

        When the worker is quiet and no flush is in flight, the batch is sent from the
        caller's task at once.
        """
        batch = self._acks
        batch.deliveries.append(delivery)
        if not self._flushing and not self._resume_at and self._quiet():
            return self._ack_from_runner(batch, delivery)
        if not self._woken:
            self._poke()
        waiter: asyncio.Future[bool] = asyncio.Future()
        batch.waiters.append((waiter, delivery))
        return waiter

    async def _ack_from_runner(self, batch: AckBatch, delivery: Delivery) -> bool:
        await self._send_from_runner()
        retry = batch.moved
        if retry is None:
            return batch.acked(delivery)
        while retry.moved is not None:  # its flush failed: wait for the one that retries it
            retry = retry.moved
        if retry.settled:
            return retry.acked(delivery)
        waiter: asyncio.Future[bool] = asyncio.Future()
        retry.waiters.append((waiter, delivery))
        return await waiter

    def finish(
        self,
        delivery: Delivery,
        record: StoredResult | None,
        *,
        ack: bool,
        ttl: float | None = None,
    ) -> None:
        """Queue ``record`` to be stored (kept ``ttl`` seconds, by default ``result_ttl``)
        and then, if ``ack``, ``delivery`` to be acked."""
        self._finishes.append((delivery, record, ack, self._ttl if ttl is None else ttl))
        if not self._woken:  # the check, not the call: this runs once per task
            self._poke()

    async def send_now(self) -> None:
        """Send what is pending from the caller's task, if the worker is quiet and no flush
        is in flight; otherwise leave it to the flusher (it was woken by :meth:`finish`)."""
        if (
            not self._flushing
            and not self._resume_at
            and self._quiet()
            and (self._finishes or self._acks.deliveries)
        ):
            await self._send_from_runner()

    def unsettled(self) -> list[Delivery]:
        """Deliveries whose settle failed and is being sent again (their leases need
        renewing meanwhile); empty while settles go through."""
        if not self._failures:
            return []
        return [*self._acks.deliveries, *(d for d, _, ack, _ in self._finishes if ack)]

    def close(self) -> None:
        """Flush what is pending, then make :meth:`run` return.

        Failed settles are sent again for at most ``settle_timeout`` more seconds.
        """
        self._closing = True
        self._give_up_at = anyio.current_time() + self._timeout
        self._poke()

    def kill(self) -> None:
        """Abandon the flush in progress, as a crash would (for ``Worker.kill``)."""
        self._killed = True
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
            if self._resume_at:  # the last flush failed: pause before sending it again
                now = anyio.current_time()
                if self._giving_up():
                    self._give_up()
                    continue
                if now < self._resume_at:
                    await anyio.sleep(min(self._resume_at, self._give_up_at) - now)
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
        acks, self._acks = self._acks, AckBatch()
        finishes = self._finishes[: self._max_batch]
        del self._finishes[: self._max_batch]
        failed: BaseException | None = None
        try:
            with anyio.CancelScope(shield=True) as self._flush_scope:
                if acks.deliveries:
                    failed = await self._flush_acks(acks)
                if finishes:
                    failed = await self._flush_finishes(finishes) or failed
        finally:
            self._flushing = False
        if failed is not None:
            self._failed(failed)
        elif self._failures:
            log.info("settles go through again after %d failed attempt(s)", self._failures)
            self._failures, self._resume_at = 0, 0.0
        return bool(acks.deliveries)

    def _failed(self, error: BaseException) -> None:
        """Pause before sending the failed items again."""
        self._failures += 1
        wait = pause(self._failures)
        self._resume_at = anyio.current_time() + wait
        if not self._woken:  # a runner's flush failed: the flusher sends it again
            self._poke()
        if self._failures == 1 or self._failures % 30 == 0:
            log.warning(
                "settling failed (%s: %s); %d pending settle(s) will be sent again in "
                "%.2f s and until they go through (failed %d time(s) in a row)",
                type(error).__name__,
                error,
                len(self._acks.deliveries) + len(self._finishes),
                wait,
                self._failures,
            )

    def _give_up(self) -> None:
        """Stop retrying (the worker is closing): resume everyone, settle nothing more."""
        acks, self._acks = self._acks, AckBatch()
        finishes, self._finishes = self._finishes, []
        acks.settle(False, ())
        self._after.clear()
        log.error(
            "gave up settling %d delivery(ies) at shutdown after %d failed attempt(s); the "
            "broker delivers them again (at-least-once tasks among them may run twice)",
            len(acks.deliveries) + len(finishes),
            self._failures,
        )
        self._failures, self._resume_at = 0, 0.0
        if finishes:
            self._on_settled(len(finishes))
