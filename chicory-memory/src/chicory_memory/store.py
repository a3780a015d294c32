"""The memory broker's state and the rules that change it: synchronous code, no awaits.

Because nothing here awaits, every operation is atomic with respect to other tasks.

Where things are stored:

* ``MemoryStore.queues``: one :class:`QueueState` per queue name, created on first use:

  - ``ready``: a deque of messages deliverable now, FIFO. ``publish``, ``nack(requeue=True)``,
    replayed dead letters and delayed messages falling due append at the back. Messages
    handed back go to the *front*, so that a lone consumer still sees publish order: those
    of a closing consumer in the order it fetched them, those whose leases expired together
    in deadline order.
  - ``delayed``: a heap of ``(due, seq, message)`` for messages whose time has not come.
    Queued messages are plain tuples (:data:`~chicory_memory.model.Message`), so a backlog
    costs the garbage collector nothing.
  - ``in_flight``: how many of the queue's messages consumers hold unsettled.
  - ``dead``: its dead letters by id, oldest first (dicts keep insertion order), kept
    within the dead-letter limits by :mod:`chicory_memory.dead`.
  - ``waiters``: events of fetches waiting for one of its messages.

* ``Subscription.held``: the deliveries one consumer holds, by token, in fetch order.
* ``MemoryStore.leases``: a heap of ``(deadline, token, delivery)`` over held deliveries.
  Renewing a lease pushes a new entry; stale entries (settled deliveries, superseded
  deadlines) are skipped when popped, and dropped in bulk once they outnumber live ones.

Time is the injected clock's. Due-ness and lease expiry are judged lazily, against the time
passed in by the caller, whenever a consumer fetches or counts are read.

The rules come in two parts. This module stores messages and makes them ready (publishing,
priorities, delayed messages falling due), hands them to consumers under a lease, and serves
the queue-wide operations (counts, replay, drop). :mod:`chicory_memory.settling` (the
:class:`~chicory_memory.settling.SettleMethods` mixin of :class:`MemoryStore`) ends
deliveries: settling, lease expiry, a consumer closing or its session severed; and hands
their messages back or dead-letters them.
"""

from __future__ import annotations

import heapq
import itertools
import math
import secrets
from collections.abc import Iterable, Mapping

from chicory.broker import QueueCounts
from chicory.errors import MessageTooLargeError
from chicory.priority import priority_of
from chicory_memory.dead import DEFAULT_MAX_AGE, DEFAULT_MAX_COUNT, DeadLetters
from chicory_memory.model import HEADERS, Held, Message, QueueState, Subscription
from chicory_memory.settling import SettleMethods

__all__ = ["MemoryStore"]


class MemoryStore(SettleMethods):
    """All queues, leases and dead letters of one memory broker.

    Settling, lease expiry and handing messages back are its :class:`SettleMethods`.

    Args:
        lease_seconds: Default lease of a fetched delivery.
        max_deliveries: Dead-letter a message instead of delivering it once more after
            this many deliveries; ``None`` for no limit.
        max_body_bytes: Largest accepted body; ``None`` for no limit.
        dead_letter_max_count: Dead letters kept per queue (:mod:`chicory_memory.dead`).
        dead_letter_max_age: Seconds a dead letter is kept.
        session: Hold deliveries as long as their consumer's session instead of a lease.
    """

    def __init__(
        self,
        *,
        lease_seconds: float,
        max_deliveries: int | None,
        max_body_bytes: int | None,
        dead_letter_max_count: int | None = DEFAULT_MAX_COUNT,
        dead_letter_max_age: float | None = DEFAULT_MAX_AGE,
        session: bool = False,
    ) -> None:
        self.session = session
        self.lease_seconds = math.inf if session else lease_seconds
        self.max_deliveries = max_deliveries
        self.max_body_bytes = max_body_bytes
        self.queues: dict[str, QueueState] = {}
        self.leases: list[tuple[float, int, Held]] = []
        self.live_leases = 0
        self.subscriptions: set[Subscription] = set()
        self._prefix = prefix = secrets.token_hex(4)
        self._message_numbers = itertools.count(1)
        self.dead_letters = DeadLetters(
            max_count=dead_letter_max_count, max_age=dead_letter_max_age, prefix=prefix
        )
        self._seq = itertools.count()

    # -- publishing ------------------------------------------------------------------------

    def queue(self, name: str) -> QueueState:
        """Return the state of queue ``name``, creating it on first use."""
        state = self.queues.get(name)
        if state is None:
            state = self.queues[name] = QueueState(name)
        return state

    def check_body(self, body: bytes) -> None:
        """Raise :class:`MessageTooLargeError` if ``body`` is over ``max_body_bytes``."""
        limit = self.max_body_bytes
        if limit is not None and len(body) > limit:
            raise MessageTooLargeError(
                f"message body is {len(body)} bytes, over this memory broker's "
                f"max_body_bytes={limit}; send a smaller payload or raise the limit"
            )

    def enqueue(
        self,
        queue: QueueState,
        body: bytes,
        headers: Mapping[str, str] | None,
        due: float | None,
        now: float,
    ) -> str:
        """Store a new message, ready now or delayed until ``due``; return its id."""
        message_id = f"{self._prefix}-{next(self._message_numbers)}"
        pairs = tuple(headers.items()) if headers else ()
        if due is not None and due > now:
            heapq.heappush(queue.delayed, (due, next(self._seq), (message_id, body, pairs, 0, due)))
        elif pairs and priority_of(pairs):
            self._rank(queue, (message_id, body, pairs, 0, now))
        else:
            queue.ready.append((message_id, body, pairs, 0, now))
        if queue.waiters:
            queue.wake()
        return message_id

    def _rank(self, queue: QueueState, message: Message, *, front: bool = False) -> None:
        """Make a message with a priority ready: in the queue's priority heap, behind the
        ready ones of its priority (``front``: before them, as a lease that expired)."""
        order = next(self._seq)
        heapq.heappush(
            queue.ranked, (-priority_of(message[HEADERS]), -order if front else order, message)
        )

    # -- time ------------------------------------------------------------------------------

    def promote(self, queue: QueueState, now: float) -> None:
        """Move the delayed messages of ``queue`` that are due by ``now`` to its ready deque.

        Fetches waiting on the queue are woken: they may have computed a later wake-up time
        on a clock that has since been moved forward (a test's clock).
        """
        delayed = queue.delayed
        if not delayed or delayed[0][0] > now:
            return
        while delayed and delayed[0][0] <= now:
            message = heapq.heappop(delayed)[2]
            if message[HEADERS] and priority_of(message[HEADERS]):
                self._rank(queue, message)
            else:
                queue.ready.append(message)
        if queue.waiters:
            queue.wake()

    # -- consuming -------------------------------------------------------------------------

    def subscribe(self, names: Iterable[str], prefetch: int) -> Subscription:
        """Open a subscription on ``names`` (deduplicated, order kept)."""
        queues = [self.queue(name) for name in dict.fromkeys(names)]
        subscription = Subscription(queues, prefetch)
        self.subscriptions.add(subscription)
        return subscription

    def claim(self, subscription: Subscription, max_count: int, now: float) -> list[Held]:
        """Hand up to ``max_count`` ready messages to ``subscription`` (bounded by prefetch).

        Several queues are served round-robin, starting after the last queue served.
        """
        self.expire_leases(now)
        queues = subscription.queues
        for queue in queues:
            if queue.delayed and queue.delayed[0][0] <= now:
                self.promote(queue, now)
        room = min(max_count, subscription.prefetch - len(subscription.held))
        if room <= 0:
            return []
        if len(queues) == 1:
            queue = queues[0]
            if queue.ranked:
                take = queue.pop_ready
                count = min(room, queue.ready_count())
                return self._hold(subscription, [(queue, take()) for _ in range(count)], now)
            ready = queue.ready
            return self._hold(
                subscription, [(queue, ready.popleft()) for _ in range(min(room, len(ready)))], now
            )
        picks: list[tuple[QueueState, Message]] = []
        size = len(queues)
        index = subscription.next_index
        idle = 0
        while len(picks) < room and idle < size:
            queue = queues[index]
            index = (index + 1) % size
            if queue.ready or queue.ranked:
                picks.append((queue, queue.pop_ready()))
                subscription.next_index = index
                idle = 0
            else:
                idle += 1
        return self._hold(subscription, picks, now)

    def _hold(
        self, subscription: Subscription, picks: list[tuple[QueueState, Message]], now: float
    ) -> list[Held]:
        """Make ``subscription`` the holder of each picked message, under one new lease.

        One pass over the batch: a fetch holds its whole batch here, so nothing in this loop
        is a call per message that need not be.
        """
        deadline = now + self.lease_seconds
        held_by_token, leases, tokens = subscription.held, self.leases, self._seq
        timed = not self.session
        claimed: list[Held] = []
        for queue, (message_id, body, headers, deliveries, since) in picks:
            token = next(tokens)
            held = Held(
                subscription,
                queue,
                (message_id, body, headers, deliveries + 1, since),
                token,
                deadline,
            )
            held_by_token[token] = held
            queue.in_flight += 1
            if timed:
                heapq.heappush(leases, (deadline, token, held))
            claimed.append(held)
        if timed:
            self.live_leases += len(claimed)
            self._drop_stale_leases()
        return claimed

    # -- dead letters ----------------------------------------------------------------------

    def drop(self, name: str) -> None:
        """Forget queue ``name`` and everything in it (its consumers must be closed)."""
        queue = self.queues.pop(name, None)
        if queue is not None:
            queue.wake()

    def replay(self, name: str, dead_id: str, now: float) -> bool:
        """Put a dead letter back on its queue as a new ready message (new id, count 0)."""
        queue = self.queues.get(name)
        letter = queue.dead.pop(dead_id, None) if queue is not None else None
        if queue is None or letter is None:
            return False
        self.enqueue(queue, letter.body, letter.headers, None, now)
        return True

    def counts(self, name: str, now: float) -> QueueCounts:
        """Return the counts of queue ``name`` as of ``now``."""
        self.expire_leases(now)
        queue = self.queues.get(name)
        if queue is None:
            return QueueCounts()
        self.promote(queue, now)
        self.dead_letters.trim(queue, now)
        return QueueCounts(
            ready=queue.ready_count(),
            in_flight=queue.in_flight,
            delayed=len(queue.delayed),
            dead=len(queue.dead),
        )
