"""``redis://``: the production broker, on Redis Streams with one consumer group per queue.

Where things live is in :mod:`chicory_redis.keys`, the atomic steps in
:mod:`chicory_redis.scripts`, consuming in :mod:`chicory_redis.consumer` and settling in
:mod:`chicory_redis.delivery`. This module is the facade: capabilities, connecting and
consuming; the other protocol faces are :mod:`chicory_redis.publishing`,
:mod:`chicory_redis.dead_letters`, :mod:`chicory_redis.admin` (counts, inspection, delayed
listing, unique keys) and :mod:`chicory_redis.flow`, on the shared state of
:mod:`chicory_redis.base`. What each guarantee costs in round trips is in
``docs/redis.md``.

Many workers on many machines may share one Redis: each consumer is a member of every
queue's consumer group, Redis hands each entry to one of them, and entries of a consumer
that died are reclaimed by the others after ``lease_seconds``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

from chicory.broker import Capabilities
from chicory.clock import Clock
from chicory_redis import scripts
from chicory_redis.admin import AdminMethods
from chicory_redis.config import RedisSettings, parse_settings
from chicory_redis.connection import broker_errors
from chicory_redis.consumer import RedisConsumer
from chicory_redis.dead_letters import DeadLetterMethods
from chicory_redis.flow import RedisFlowMethods
from chicory_redis.publishing import PUBLISH_CHUNK, PublishMethods

__all__ = ["PUBLISH_CHUNK", "RedisBroker"]


class RedisBroker(PublishMethods, DeadLetterMethods, AdminMethods, RedisFlowMethods):
    """A shared, persistent broker on Redis 6.2+ (Redis 7 recommended).

    Args:
        settings: Connection and behaviour settings (default: ``redis://localhost:6379/0``).
        clock: Source of time for delayed messages and ``dead_at`` (default: the real clock).
            Lease expiry is measured by the Redis server itself (entry idle time).
    """

    def __init__(self, settings: RedisSettings | None = None, *, clock: Clock | None = None):
        super().__init__(settings, clock=clock)
        self._consumers: set[RedisConsumer] = set()
        self._reclaimed_total = 0
        self._capabilities = Capabilities(
            delayed_delivery=True,
            lease_renewal=True,
            dead_letter=True,
            fifo=True,
            priorities=True,
            atomic_retry=True,
            shared=True,
            max_body_bytes=self._settings.max_body_bytes,
            lease_seconds=self._settings.lease_seconds,
            dead_letter_max_count=self._settings.dead_letter_max_count,
            dead_letter_max_age=self._settings.dead_letter_max_age,
            delete_queue=True,
            inspection=True,
            delayed_listing=True,
            flow_control=True,
            unique_enqueue=True,
        )

    @classmethod
    def from_url(
        cls, url: str = "redis://localhost:6379/0", *, clock: Clock | None = None, **options: Any
    ) -> RedisBroker:
        """Build a broker from a URL and options (see :mod:`chicory_redis.config`).

        Raises:
            ConfigurationError: bad URL or option.
        """
        return cls(parse_settings(url, **options), clock=clock)

    def __repr__(self) -> str:
        return f"<RedisBroker {self.display_url}>"

    @property
    def capabilities(self) -> Capabilities:
        """What this broker can do (inspection and priorities included)."""
        return self._capabilities

    @property
    def reclaimed_total(self) -> int:
        """How many entries this broker's consumers reclaimed from dead or stalled ones."""
        return self._reclaimed_total

    def note_reclaimed(self, queue: str, count: int) -> None:
        """Count ``count`` reclaimed entries of ``queue`` (called by consumers)."""
        self._reclaimed_total += count

    def forget(self, consumer: RedisConsumer) -> None:
        """Stop tracking a closed consumer (called by the consumer)."""
        self._consumers.discard(consumer)

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect, check the server answers, and load the Lua scripts. Idempotent.

        Raises:
            BrokerConnectionError: Redis cannot be reached.
        """
        if self._client is not None:
            return
        self._client = await scripts.open_client(self._settings, scripts.ALL_SCRIPTS, broker_errors)

    async def close(self) -> None:
        """Close every consumer (handing deliveries back), then the connections. Idempotent."""
        try:
            for consumer in list(self._consumers):
                await consumer.close()
        finally:
            client, self._client = self._client, None
            if client is not None:
                await client.aclose(close_connection_pool=True)

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

    def consume(self, queues: Sequence[str], *, prefetch: int) -> RedisConsumer:
        """Open a consumer on ``queues`` holding at most ``prefetch`` unsettled deliveries.

        Raises:
            BrokerError: the broker is not connected.
            ConfigurationError: no queues, or ``prefetch`` below 1.
        """
        _ = self.client
        consumer = RedisConsumer(self, queues, prefetch)
        self._consumers.add(consumer)
        return consumer
