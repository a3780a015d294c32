"""``memory://``: the in-process reference broker, and the oracle other brokers are held to.

:class:`MemoryBroker` is the async facade; every message, lease and dead letter is stored in
one :class:`chicory_memory.store.MemoryStore` (see that module for what lives where) and every
change is one synchronous call into it, so each operation is atomic. Consumers and deliveries
are thin handles on the store's ``Subscription`` and ``Held`` records.

The state belongs to the broker object, not to a connection: ``close()`` closes every
consumer (handing their unsettled deliveries back), and a later ``connect()`` finds the
queues as they were, like a server outliving its clients. Nothing is shared with other
processes. While the broker is not connected, every operation raises
:class:`~chicory.errors.BrokerError`.

It offers both lease models of :mod:`chicory.broker`, so each has an oracle: ``"timed"``
(the default: leases of ``lease_seconds``, renewable) and ``"session"`` (``memory://?
lease_model=session``: a delivery is held until its consumer closes or its session is cut
with :meth:`MemoryConsumer.sever`, as RabbitMQ holds unacked deliveries per channel).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from chicory.broker import Capabilities, DeadLetter, LeaseModel, OutgoingMessage, QueueCounts
from chicory.clock import Clock, SystemClock, to_epoch
from chicory.delayed import DelayedPage
from chicory.errors import BrokerError, ConfigurationError
from chicory.inspection import DeadLetterPage, QueueStats
from chicory.unique import UniqueClaim, check_claim
from chicory.urloptions import Converter, integer, number, optional_integer, optional_number
from chicory_memory import inspect, unique
from chicory_memory.consumer import MemoryConsumer
from chicory_memory.dead import DEFAULT_MAX_AGE, DEFAULT_MAX_COUNT
from chicory_memory.flow import FlowMethods, FlowState
from chicory_memory.model import QueueState
from chicory_memory.store import MemoryStore
from chicory_memory.urls import parse_memory_url

__all__ = ["MemoryBroker"]

_URL_OPTIONS: dict[str, Converter | None] = {
    "lease_seconds": number,
    "max_deliveries": integer,
    "max_body_bytes": integer,
    "dead_letter_max_count": optional_integer,
    "dead_letter_max_age": optional_number,
    "lease_model": str,
}
_CONSTRUCTOR_OPTIONS = frozenset(
    {
        "lease_seconds",
        "max_deliveries",
        "clock",
        "max_body_bytes",
        "dead_letter_max_count",
        "dead_letter_max_age",
        "lease_model",
    }
)


class MemoryBroker(FlowMethods):
    """An in-process broker with leases, delays, dead letters and an injectable clock.

    Args:
        lease_seconds: How long a fetched delivery is held before it is redelivered, unless
            settled or renewed.
        max_deliveries: Dead-letter a message instead of delivering it a
            ``max_deliveries + 1``-th time (stops crash-looping poison messages); ``None``
            for no limit.
        clock: Source of time for leases, delays and ``dead_at`` (default: the real clock).
        max_body_bytes: Largest body accepted; ``None`` for no limit.
        dead_letter_max_count: Dead letters kept per queue, the oldest dropped first
            (10,000 by default); ``None`` for no limit.
        dead_letter_max_age: Seconds a dead letter is kept (30 days by default); ``None``
            for no limit.
        lease_model: ``"timed"`` (leases of ``lease_seconds``) or ``"session"`` (held until
            the consumer closes or its session is severed; ``lease_seconds`` is unused).

    Raises:
        ConfigurationError: an option is out of range.
    """

    def __init__(
        self,
        *,
        lease_seconds: float = 30.0,
        max_deliveries: int | None = None,
        clock: Clock | None = None,
        max_body_bytes: int | None = None,
        dead_letter_max_count: int | None = DEFAULT_MAX_COUNT,
        dead_letter_max_age: float | None = DEFAULT_MAX_AGE,
        lease_model: LeaseModel = "timed",
    ) -> None:
        if lease_model not in ("timed", "session"):
            raise ConfigurationError(
                f"lease_model must be 'timed' or 'session', got {lease_model!r}"
            )
        if not lease_seconds > 0:
            raise ConfigurationError(f"lease_seconds must be positive, got {lease_seconds}")
        if max_deliveries is not None and max_deliveries < 1:
            raise ConfigurationError(f"max_deliveries must be at least 1, got {max_deliveries}")
        if max_body_bytes is not None and max_body_bytes < 1:
            raise ConfigurationError(f"max_body_bytes must be at least 1, got {max_body_bytes}")
        self._clock: Clock = clock if clock is not None else SystemClock()
        session = lease_model == "session"
        self._store = MemoryStore(
            lease_seconds=lease_seconds,
            max_deliveries=max_deliveries,
            max_body_bytes=max_body_bytes,
            dead_letter_max_count=dead_letter_max_count,
            dead_letter_max_age=dead_letter_max_age,
            session=session,
        )
        self._capabilities = Capabilities(
            delayed_delivery=True,
            lease_renewal=not session,
            dead_letter=True,
            fifo=True,
            priorities=True,
            atomic_retry=True,
            shared=False,
            max_body_bytes=max_body_bytes,
            lease_seconds=None if session else lease_seconds,
            lease_model=lease_model,
            delete_queue=True,
            dead_letter_max_count=dead_letter_max_count,
            dead_letter_max_age=dead_letter_max_age,
            inspection=True,
            delayed_listing=True,
            flow_control=True,
            unique_enqueue=True,
        )
        self._flow = FlowState(self._clock)
        self._connected = False

    @classmethod
    def from_url(cls, url: str, **options: Any) -> MemoryBroker:
        """Build a broker from ``memory://[?lease_seconds=..&max_deliveries=..&...]``.

        Args:
            url: The URL; its query may set ``lease_seconds``, ``max_deliveries``,
                ``max_body_bytes``, ``dead_letter_max_count`` and ``dead_letter_max_age``
                (``none`` for no limit) and ``lease_model``.
            **options: Keyword arguments of the constructor; they override the URL.

        Raises:
            ConfigurationError: not a ``memory://`` URL, or an unknown or invalid option.
        """
        unknown = sorted(set(options) - _CONSTRUCTOR_OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"unknown memory broker option(s) {', '.join(unknown)}; accepted: "
                f"{', '.join(sorted(_CONSTRUCTOR_OPTIONS))}"
            )
        return cls(**{**parse_memory_url(url, _URL_OPTIONS), **options})

    def __repr__(self) -> str:
        state = "connected" if self._connected else "not connected"
        store = self._store
        lease = "session leases" if store.session else f"lease_seconds={store.lease_seconds}"
        return f"<MemoryBroker {lease} {state}>"

    @property
    def capabilities(self) -> Capabilities:
        """What this broker can do: everything except priorities and sharing (and lease
        renewal, with session-bound leases); inspection included."""
        return self._capabilities

    @property
    def clock(self) -> Clock:
        """The clock leases and delays are judged by."""
        return self._clock

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Start accepting operations. Idempotent; queues kept from before are still there."""
        self._connected = True

    async def close(self) -> None:
        """Close every consumer (handing back what they hold) and stop accepting operations.

        Idempotent; stored messages stay for a later :meth:`connect`.
        """
        self._connected = False
        store, now = self._store, self._clock.time()
        for subscription in list(store.subscriptions):
            store.close_subscription(subscription, now)

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _check_connected(self) -> None:
        if not self._connected:
            raise BrokerError(
                "the memory broker is not connected (never connected, or closed); use "
                "'async with broker:' or 'await broker.connect()' first"
            )

    # -- publishing ------------------------------------------------------------------------

    async def publish(
        self,
        queue: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        not_before: datetime | None = None,
    ) -> str:
        """Enqueue one message; return its id. Delayed if ``not_before`` is in the future.

        Raises:
            BrokerError: the broker is not connected.
            ValueError: ``not_before`` is naive.
            MessageTooLargeError: the body is over ``max_body_bytes``.
        """
        if not self._connected:
            self._check_connected()
        store = self._store
        if store.max_body_bytes is not None:
            store.check_body(body)
        due = to_epoch(not_before) if not_before is not None else None
        return store.enqueue(store.queue(queue), body, headers, due, self._clock.time())

    async def publish_many(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Enqueue many messages, all or nothing; return their ids in order.

        Raises:
            BrokerError: the broker is not connected.
            ValueError: a ``not_before`` is naive (nothing is enqueued).
            MessageTooLargeError: a body is over ``max_body_bytes`` (nothing is enqueued).
        """
        self._check_connected()
        store = self._store
        if store.max_body_bytes is not None:
            for message in messages:
                store.check_body(message.body)
        dues = [None if m.not_before is None else to_epoch(m.not_before) for m in messages]
        state, now = store.queue(queue), self._clock.time()
        return [
            store.enqueue(state, message.body, message.headers, due, now)
            for message, due in zip(messages, dues, strict=True)
        ]

    # -- consuming -------------------------------------------------------------------------

    def consume(self, queues: Sequence[str], *, prefetch: int) -> MemoryConsumer:
        """Open a consumer on ``queues`` (served round-robin) holding at most ``prefetch``.

        Raises:
            BrokerError: the broker is not connected.
            TypeError: ``queues`` is a single string rather than a sequence of names.
            ValueError: no queues, or ``prefetch`` below 1.
        """
        self._check_connected()
        if isinstance(queues, str):
            raise TypeError(f"queues must be a sequence of names, e.g. [{queues!r}]")
        if not queues:
            raise ValueError("consume() needs at least one queue")
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        subscription = self._store.subscribe(queues, prefetch)
        return MemoryConsumer(self._store, self._clock, subscription)

    # -- inspection and dead letters -------------------------------------------------------

    async def counts(self, queue: str) -> QueueCounts:
        """Return the counts of ``queue`` as of the clock's current time."""
        self._check_connected()
        return self._store.counts(queue, self._clock.time())

    def next_due(self, queues: Sequence[str]) -> float | None:
        """When the earliest delayed message of ``queues`` falls due, on the broker's clock.

        Returns:
            Seconds since the epoch, or ``None`` when none of them holds a delayed message.
            What ``chicory.testkit`` moves its clock to when everything else is done.
        """
        states = [self._store.queues.get(name) for name in queues]
        times = [state.delayed[0][0] for state in states if state is not None and state.delayed]
        return min(times) if times else None

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """List up to ``limit`` dead letters of ``queue``, oldest first."""
        self._check_connected()
        state = self._trimmed(queue)
        if state is None or limit <= 0:
            return []
        return list(itertools.islice(state.dead.values(), limit))

    async def replay_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Put a dead letter back on ``queue`` as a new ready message; False if unknown."""
        self._check_connected()
        return self._store.replay(queue, dead_letter_id, self._clock.time())

    async def delete_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Delete one dead letter; False if unknown."""
        self._check_connected()
        state = self._store.queues.get(queue)
        return state is not None and state.dead.pop(dead_letter_id, None) is not None

    async def purge_dead_letters(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; return how many there were."""
        self._check_connected()
        state = self._store.queues.get(queue)
        if state is None:
            return 0
        count = len(state.dead)
        state.dead.clear()
        return count

    async def delete_queue(self, queue: str) -> None:
        """Delete ``queue`` and every message in it (ready, delayed, dead); its consumers
        must be closed first."""
        self._check_connected()
        self._store.drop(queue)

    # -- the inspection capability ---------------------------------------------------------

    async def queues(self) -> list[str]:
        """Every queue published to, consumed or holding dead letters since the broker was
        created, sorted."""
        self._check_connected()
        return sorted(self._store.queues)

    async def queue_stats(self, queues: Sequence[str]) -> list[QueueStats]:
        """The stats of each of ``queues`` as of the clock's current time.

        ``consumers`` counts the open consumers of the queue; ``oldest_ready_at`` is when the
        message at the head of the ready queue was published (or fell due).
        """
        self._check_connected()
        return inspect.queue_stats(self._store, queues, self._clock.time())

    async def dead_letter_page(
        self,
        queue: str,
        *,
        after: str | None = None,
        limit: int = 100,
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
    ) -> DeadLetterPage:
        """One page of the dead letters of ``queue``, past ``after``, within the times.

        Raises:
            ValueError: ``limit`` is below 1, or a time is naive.
        """
        self._check_connected()
        return inspect.dead_letter_page(
            self._trimmed(queue),
            after=after,
            limit=limit,
            since=since,
            until=until,
            newest_first=newest_first,
        )

    async def get_dead_letter(self, queue: str, dead_letter_id: str) -> DeadLetter | None:
        """One dead letter of ``queue``, or ``None``."""
        self._check_connected()
        state = self._trimmed(queue)
        return state.dead.get(dead_letter_id) if state is not None else None

    def _trimmed(self, queue: str) -> QueueState | None:
        """The state of ``queue`` with its dead letters over the limits dropped."""
        state = self._store.queues.get(queue)
        if state is not None:
            self._store.dead_letters.trim(state, self._clock.time())
        return state

    async def requeue_dead_letter(
        self, queue: str, dead_letter_id: str, body: bytes, headers: Mapping[str, str]
    ) -> bool:
        """Replace a dead letter by a new ready message with ``body`` and ``headers``.

        Raises:
            MessageTooLargeError: ``body`` is over ``max_body_bytes`` (the letter stays).
        """
        self._check_connected()
        store = self._store
        state = store.queues.get(queue)
        if state is None or dead_letter_id not in state.dead:
            return False
        store.check_body(body)
        del state.dead[dead_letter_id]
        store.enqueue(state, body, headers, None, self._clock.time())
        return True

    # -- the delayed_listing capability ----------------------------------------------------

    async def delayed_page(
        self, queue: str, *, after: str | None = None, limit: int = 100
    ) -> DelayedPage:
        """One page of the delayed messages of ``queue``, soonest due first.

        Raises:
            ValueError: ``limit`` is below 1, or ``after`` is not a cursor of this broker.
        """
        self._check_connected()
        return inspect.delayed_page(
            self._store.queues.get(queue), self._clock.time(), after=after, limit=limit
        )

    async def remove_delayed(self, queue: str, message_id: str) -> bool:
        """Remove one delayed message of ``queue`` (False if it is not delayed there)."""
        self._check_connected()
        state = self._store.queues.get(queue)
        if state is None:
            return False
        self._store.promote(state, self._clock.time())  # a due one is not delayed any more
        return inspect.remove_delayed(state, message_id)

    # -- the unique_enqueue capability -----------------------------------------------------

    async def publish_unique(
        self,
        queue: str,
        message: OutgoingMessage,
        *,
        key: str,
        holder: str,
        hold: float,
        keep: float = 0.0,
    ) -> UniqueClaim:
        """Publish ``message`` unless ``key`` is held in ``queue`` (see
        :meth:`chicory.unique.UniqueEnqueue.publish_unique`).

        Raises:
            BrokerError: the broker is not connected.
            ValueError: ``hold``/``keep`` out of range, or ``not_before`` is naive.
            MessageTooLargeError: the body is over ``max_body_bytes``.
        """
        self._check_connected()
        check_claim(hold, keep)
        store, now = self._store, self._clock.time()
        store.check_body(message.body)
        due = None if message.not_before is None else to_epoch(message.not_before)
        state = store.queue(queue)
        current = unique.holder(state, key, now)
        if current is not None:
            return UniqueClaim(message_id=None, holder=current)
        unique.claim(state, key, holder, hold, keep, now)
        message_id = store.enqueue(state, message.body, message.headers, due, now)
        return UniqueClaim(message_id=message_id, holder=holder)

    async def release_unique(self, queue: str, key: str, holder: str) -> bool:
        """End ``holder``'s claim on ``key`` in ``queue``; False if it held none."""
        self._check_connected()
        return unique.release(self._store.queues.get(queue), key, holder, self._clock.time())

    async def unique_holder(self, queue: str, key: str) -> str | None:
        """Who holds ``key`` in ``queue`` now, or ``None``."""
        self._check_connected()
        return unique.holder(self._store.queues.get(queue), key, self._clock.time())
