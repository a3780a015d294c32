"""How a delivery ends, and what happens to its message: the memory store's settling rules.

A delivery ends in one of five ways (its :class:`~chicory_memory.model.DeliveryState`):
its consumer acks it; nacks, retries or dead-letters it; its lease runs out; its consumer
closes; or, with session-bound leases, its consumer's session is severed. Whatever ends it
first takes effect, and later attempts to settle it do nothing (or raise, once its consumer
closed). Its message is then gone, dead-lettered, or handed back (:meth:`give_back`): ready
again at the front of its queue (or the back, or delayed, for a nack).

A message keeps its id across redeliveries and counts its deliveries. Each delivery carries a
unique token and its own state, so a delivery whose lease expired (its message is already
ready again, or redelivered) can never settle the newer copy. When ``max_deliveries`` is set, a
message that has been delivered that many times is dead-lettered at the moment it would
otherwise become ready again.

Leases are judged against the time passed in by the caller: a lease ended by ``now`` makes
its message ready again when a consumer next fetches or counts are read (where the lease
heap lives is described in :mod:`chicory_memory.store`).

With session-bound leases (``session=True``) a delivery has no deadline: it is held until it
is settled, its consumer closes, or its consumer's session is severed (:meth:`sever`), which
makes the message ready again at once and leaves the old delivery lost (``EXPIRED``):
settling it does nothing, and ``ack_many`` reports it.

:class:`SettleMethods` is a mixin of :class:`~chicory_memory.store.MemoryStore`, which holds
the state it works on; like the rest of the store, it is synchronous, so each call is atomic.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from chicory.errors import DeliveryStateError
from chicory.priority import priority_of
from chicory_memory.dead import DeadLetters
from chicory_memory.model import (
    DELIVERIES,
    HEADERS,
    DeliveryState,
    Held,
    Message,
    QueueState,
    Subscription,
)

__all__ = ["SettleMethods"]


def _is_live(entry: tuple[float, int, Held]) -> bool:
    """Whether a lease-heap entry is the current lease of a held delivery."""
    held = entry[2]
    return held.state is DeliveryState.HELD and held.deadline == entry[0]


class SettleMethods:
    """The settling, lease and hand-back rules of :class:`~chicory_memory.store.MemoryStore`."""

    session: bool
    lease_seconds: float
    max_deliveries: int | None
    leases: list[tuple[float, int, Held]]
    live_leases: int
    subscriptions: set[Subscription]
    dead_letters: DeadLetters
    _seq: itertools.count[int]

    if TYPE_CHECKING:

        def check_body(self, body: bytes) -> None: ...

        def enqueue(
            self,
            queue: QueueState,
            body: bytes,
            headers: Mapping[str, str] | None,
            due: float | None,
            now: float,
        ) -> str: ...

        def _rank(self, queue: QueueState, message: Message, *, front: bool = False) -> None: ...

    # -- leases ----------------------------------------------------------------------------

    def expire_leases(self, now: float) -> None:
        """Make every message whose lease ended by ``now`` ready again (at the front)."""
        leases = self.leases
        if not leases or leases[0][0] > now:
            return
        expired: list[Held] = []
        while leases and leases[0][0] <= now:
            entry = heapq.heappop(leases)
            if _is_live(entry):  # released at once: a duplicate entry is then stale
                self._release(entry[2], DeliveryState.EXPIRED)
                expired.append(entry[2])
        self.give_back(expired, now, front=True)

    def next_deadline(self, queues: Iterable[QueueState]) -> float | None:
        """Earliest time something may become ready for ``queues`` (a due delay or a lease)."""
        times = [q.delayed[0][0] for q in queues if q.delayed]
        leases = self.leases
        while leases and not _is_live(leases[0]):
            heapq.heappop(leases)  # settled or renewed since: no wake-up needed for it
        if leases:
            times.append(leases[0][0])
        return min(times) if times else None

    def _push_lease(self, held: Held) -> None:
        """Enter the (new) lease deadline of ``held`` in the lease heap."""
        heapq.heappush(self.leases, (held.deadline, held.token, held))
        self._drop_stale_leases()

    def _drop_stale_leases(self) -> None:
        """Rebuild the lease heap without stale entries once they outnumber live ones."""
        if len(self.leases) > 1024 + 2 * self.live_leases:
            self.leases = [entry for entry in self.leases if _is_live(entry)]
            heapq.heapify(self.leases)

    # -- consumers closing -----------------------------------------------------------------

    def close_subscription(self, subscription: Subscription, now: float) -> None:
        """Close ``subscription``, handing its unsettled messages back to the queue fronts."""
        if subscription.closed:
            return
        subscription.closed = True
        self.subscriptions.discard(subscription)
        held = list(subscription.held.values())
        for item in held:
            self._release(item, DeliveryState.HANDED_BACK)
        self.give_back(held, now, front=True)
        subscription.wake()

    def sever(self, subscription: Subscription, now: float) -> None:
        """End ``subscription``'s session, as a dropped connection would.

        With session-bound leases its unsettled messages go back to the queue fronts and its
        deliveries are lost (settling them does nothing). With timed leases nothing changes:
        the deliveries stay leased until settled or expired, as a server keeps the work of a
        client that reconnects.
        """
        if subscription.closed or not self.session:
            return
        held = list(subscription.held.values())
        for item in held:
            self._release(item, DeliveryState.EXPIRED)
        self.give_back(held, now, front=True)

    # -- settling --------------------------------------------------------------------------

    def _release(self, held: Held, state: DeliveryState) -> None:
        self._release_all((held,), state)

    def _release_all(self, released: Iterable[Held], state: DeliveryState) -> None:
        """Move each of ``released`` (all held now) to ``state``: its consumer holds it no more."""
        count = 0
        for held in released:
            held.state = state
            subscription = held.subscription
            del subscription.held[held.token]
            held.queue.in_flight -= 1
            count += 1
            if subscription.waiters:
                subscription.wake()
        if not self.session:
            self.live_leases -= count

    def _may_settle(self, held: Held) -> bool:
        """True if ``held`` is held now; False if settling it must do nothing.

        Raises:
            DeliveryStateError: its consumer was closed and it had not been settled.
        """
        state = held.state
        if state is DeliveryState.HELD:
            return True
        if state is DeliveryState.ACKED or state is DeliveryState.SETTLED:
            return False
        if held.subscription.closed:
            raise DeliveryStateError(
                f"message {held.message_id} cannot be settled: its consumer was closed and "
                "handed it back, so it will be delivered again"
            )
        return False  # the lease expired: the message is ready again, leave it alone

    def ack(self, held: Held) -> None:
        """Remove the message of ``held`` for good."""
        self.ack_many((held,))

    def ack_many(self, helds: Sequence[Held]) -> list[Held]:
        """Remove the messages of ``helds`` for good (each as :meth:`ack` would).

        Returns:
            Those not acked because their lease had expired (their messages went back to
            their queues).

        Raises:
            DeliveryStateError: one of them was handed back by its closed consumer before
                it was settled (nothing is acked).
        """
        held_now = DeliveryState.HELD  # read once: an enum member lookup is not free in 3.11
        acked = [held for held in helds if held.state is held_now or self._may_settle(held)]
        self._release_all(acked, DeliveryState.ACKED)
        if len(acked) == len(helds):
            return []
        return [held for held in helds if held.state is DeliveryState.EXPIRED]

    def nack(self, held: Held, *, requeue: bool, delay: float | None, now: float) -> None:
        """Requeue (at the back, or delayed) or drop the message of ``held``."""
        if self._may_settle(held):
            self._release(held, DeliveryState.SETTLED)
            if requeue:
                self.give_back([held], now, front=False, delay=delay)

    def retry(
        self, held: Held, body: bytes, headers: Mapping[str, str], due: float | None, now: float
    ) -> None:
        """Atomically publish a new message on the same queue and settle ``held``."""
        self.check_body(body)
        if self._may_settle(held):
            self.enqueue(held.queue, body, headers, due, now)
            self._release(held, DeliveryState.SETTLED)

    def extend(self, held: Held, seconds: float | None, now: float) -> None:
        """Move the lease deadline of ``held`` to ``now + seconds`` (if still held)."""
        if held.state is DeliveryState.HELD and not self.session:
            held.deadline = now + (self.lease_seconds if seconds is None else seconds)
            self._push_lease(held)

    def dead_letter(self, held: Held, reason: str, now: float) -> None:
        """Dead-letter the message of ``held``; after an ack, record a copy."""
        if held.state is DeliveryState.ACKED:
            held.state = DeliveryState.SETTLED
        elif self._may_settle(held):
            self._release(held, DeliveryState.SETTLED)
        else:
            return
        self.dead_letters.bury(held.queue, held.message, reason, held.count, now)

    def give_back(
        self, released: list[Held], now: float, *, front: bool, delay: float | None = None
    ) -> None:
        """Make the messages of ``released`` deliverable again, or dead-letter those at
        ``max_deliveries``.

        Args:
            released: Deliveries no longer held, in the order their messages should be
                delivered again.
            now: The current time.
            front: Put them at the front of their queues (else at the back).
            delay: Hold them back this many seconds first (only with ``front=False``).
        """
        limit = self.max_deliveries
        woken: set[QueueState] = set()
        for held in reversed(released) if front else released:
            queue, message = held.queue, held.message
            deliveries = message[DELIVERIES]
            if limit is not None and deliveries >= limit:
                self.dead_letters.bury(
                    queue,
                    message,
                    f"delivered {deliveries} times without being settled (max_deliveries={limit})",
                    deliveries,
                    now,
                )
                continue
            if delay is not None and delay > 0 and not front:
                heapq.heappush(queue.delayed, (now + delay, next(self._seq), message))
            elif message[HEADERS] and priority_of(message[HEADERS]):
                self._rank(queue, message, front=front)
            elif front:
                queue.ready.appendleft(message)
            else:
                queue.ready.append(message)
            woken.add(queue)
        for queue in woken:
            queue.wake()
