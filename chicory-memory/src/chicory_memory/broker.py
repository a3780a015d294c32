"""``memory://``: the in-process reference broker, and the oracle other brokers are held to.

:class:`MemoryBroker` is the async facade; every message, lease and dead letter is stored in
one :class:`chicory_memory.store.MemoryStore` (see that module for what lives where) and every
change is one synchronous call into it, so each operation is atomic. Consumers and deliveries
are thin handles on the store's ``Subscription`` and ``Held`` records.

This module puts the broker together: its options, lifecycle and consumers. Its other faces
are mixins of their own: :mod:`chicory_memory.publishing` (publish, unique enqueue),
:mod:`chicory_memory.dead_letters`, :mod:`chicory_memory.admin` (counts, inspection, delayed
listing, deleting queues) and :mod:`chicory_memory.flow` (rate limits and permits), over
the shared state of :mod:`chicory_memory.base`.

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

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from chicory.broker import Capabilities, LeaseModel
from chicory.clock import Clock, SystemClock
from chicory.errors import ConfigurationError
from chicory.urloptions import Converter, integer, number, optional_integer, optional_number
from chicory_memory.admin import AdminMethods
from chicory_memory.consumer import MemoryConsumer
from chicory_memory.dead import DEFAULT_MAX_AGE, DEFAULT_MAX_COUNT
from chicory_memory.dead_letters import DeadLetterMethods
from chicory_memory.flow import FlowMethods, FlowState
from chicory_memory.publishing import PublishMethods
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


class MemoryBroker(PublishMethods, DeadLetterMethods, AdminMethods, FlowMethods):
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
        clock = clock if clock is not None else SystemClock()
        session = lease_model == "session"
        store = MemoryStore(
            lease_seconds=lease_seconds,
            max_deliveries=max_deliveries,
            max_body_bytes=max_body_bytes,
            dead_letter_max_count=dead_letter_max_count,
            dead_letter_max_age=dead_letter_max_age,
            session=session,
        )
        super().__init__(store, clock)
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
        self._flow = FlowState(clock)

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
        """What this broker can do: everything except sharing between processes (and lease
        renewal, with session-bound leases); priorities and inspection included."""
        return self._capabilities

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
