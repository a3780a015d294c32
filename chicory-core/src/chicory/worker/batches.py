"""What the settler batches: pre-run acks with their waiting runners, finished tasks.

See :mod:`chicory.worker.settler` for how batches are flushed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from chicory.backend import StoredResult
from chicory.broker import Delivery

__all__ = ["AckBatch", "Finish", "by_ttl"]

Finish = tuple[Delivery, StoredResult | None, bool, float]
"""A finished task: its delivery, the record to store, whether to ack after it, its ttl."""


def by_ttl(records: Sequence[tuple[StoredResult, float]]) -> list[tuple[list[StoredResult], float]]:
    """``records`` grouped by their ttl, in the order each ttl first appears."""
    groups: dict[float, list[StoredResult]] = {}
    for record, ttl in records:
        groups.setdefault(ttl, []).append(record)
    return [(batch, ttl) for ttl, batch in groups.items()]


class AckBatch:
    """Pre-run acks flushed together, and the runners waiting for their outcome.

    Each waiting runner awaits a future of its own (so cancelling one runner cancels only
    its future), resolved by :meth:`settle` to whether its ack was confirmed. A runner of
    quick at-most-once tasks suspends on one of these on every task, so the wait is the
    future itself: no ``anyio.Event`` (two more layers of calls on asyncio) and no
    coroutine around it.
    """

    __slots__ = ("deliveries", "lost", "moved", "ok", "settled", "waiters")

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.waiters: list[tuple[asyncio.Future[bool], Delivery]] = []
        self.ok = False  # the batch went through
        self.settled = False  # its outcome is known
        self.lost: Sequence[Delivery] = ()  # its deliveries whose lease had expired
        self.moved: AckBatch | None = None  # its flush failed: it is retried with this one

    def settle(self, ok: bool, lost: Sequence[Delivery]) -> None:
        """Record the flush's outcome and resume the runners waiting for it."""
        self.ok, self.lost, self.settled = ok, lost, True
        for waiter, delivery in self.waiters:
            if not waiter.done():  # done: its runner was cancelled
                waiter.set_result(self.acked(delivery))

    def move_into(self, later: AckBatch) -> None:
        """Put this batch, whose flush failed, in front of ``later`` to be sent again.

        A delivery whose runner stopped waiting (cancelled by a drain) is left out: it
        stays unsettled, so the consumer hands it back as it closes.
        """
        gone = {id(d) for waiter, d in self.waiters if waiter.done()}
        if gone:
            self.deliveries = [d for d in self.deliveries if id(d) not in gone]
        later.deliveries[:0] = self.deliveries
        later.waiters[:0] = [(w, d) for w, d in self.waiters if not w.done()]
        self.moved = later

    def acked(self, delivery: Delivery) -> bool:
        """Whether the ack of ``delivery`` was confirmed."""
        return self.ok and (not self.lost or all(lost is not delivery for lost in self.lost))
