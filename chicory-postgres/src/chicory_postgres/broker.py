"""``postgresql://``: a durable, shared broker on one PostgreSQL table.

The tables are in :mod:`chicory_postgres.schema`, every statement in
:mod:`chicory_postgres.statements`, consuming and settling in :mod:`chicory_postgres.consumer`,
operators' listings in :mod:`chicory_postgres.inspect`. This module is the facade:
capabilities, connecting and consuming; the other protocol faces are
:mod:`chicory_postgres.publishing` (also inside the caller's own transaction:
:meth:`PostgresBroker.publish_within`), :mod:`chicory_postgres.dead_letters`,
:mod:`chicory_postgres.admin` (counts, inspection, delayed listing, unique keys) and
:mod:`chicory_postgres.flow`, on the shared state of :mod:`chicory_postgres.base`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from types import TracebackType
from typing import Any, Self

import anyio

from chicory.broker import Capabilities
from chicory_postgres.admin import AdminMethods
from chicory_postgres.config import PostgresSettings, parse_settings
from chicory_postgres.connection import Listener, broker_errors, open_pool
from chicory_postgres.consumer import PostgresConsumer
from chicory_postgres.dead_letters import DeadLetterMethods
from chicory_postgres.flow import PostgresFlowMethods
from chicory_postgres.publishing import PublishMethods

__all__ = ["PostgresBroker"]

log = logging.getLogger("chicory.postgres")


class PostgresBroker(PublishMethods, DeadLetterMethods, AdminMethods, PostgresFlowMethods):
    """A shared, durable broker on PostgreSQL 13+ (``FOR UPDATE SKIP LOCKED`` claims).

    Args:
        settings: Connection and behaviour settings (default: ``postgresql://localhost``).
    """

    def __init__(self, settings: PostgresSettings | None = None) -> None:
        super().__init__(settings)
        self._consumers: set[PostgresConsumer] = set()
        self._lock = anyio.Lock()
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
            unique_enqueue=True,
            transactional_enqueue=True,
            flow_control=True,
        )

    @classmethod
    def from_url(cls, url: str = "postgresql://localhost/postgres", **options: Any) -> Self:
        """Build a broker from a URL and options (see :mod:`chicory_postgres.config`).

        Raises:
            ConfigurationError: bad URL or option.
        """
        return cls(parse_settings(url, **options))

    def __repr__(self) -> str:
        return f"<PostgresBroker {self.display_url} schema={self._settings.schema}>"

    @property
    def capabilities(self) -> Capabilities:
        """What this broker can do (every capability of the core protocol)."""
        return self._capabilities

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the pool (migrating the schema unless told not to) and the LISTEN
        connection. Idempotent.

        Raises:
            BrokerConnectionError: PostgreSQL cannot be reached.
            ConfigurationError: the schema is behind and ``migrate`` is off.
        """
        async with self._lock:
            if self._pool is not None:
                return
            with broker_errors(self._settings, "connecting"):
                self._pool = await open_pool(self._settings, "chicory-broker")
            if self._wake_channel is not None:
                self._listener = Listener(
                    self._settings, [self._wake_channel], self._notified, self._wake_all
                )
                self._listener.start()

    async def close(self) -> None:
        """Close every consumer (handing deliveries back), then the connections. Idempotent."""
        try:
            for consumer in list(self._consumers):
                await consumer.close()
        finally:
            listener, self._listener = self._listener, None
            pool, self._pool = self._pool, None
            with anyio.CancelScope(shield=True):
                if listener is not None:
                    await listener.stop()
                if pool is not None:
                    await pool.close()

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

    def consume(self, queues: Sequence[str], *, prefetch: int) -> PostgresConsumer:
        """Open a consumer on ``queues`` holding at most ``prefetch`` deliveries.

        Raises:
            BrokerError: the broker is not connected.
        """
        self.pool  # noqa: B018 - raises if not connected
        consumer = PostgresConsumer(self, queues, prefetch)
        self._consumers.add(consumer)
        return consumer

    def forget(self, consumer: PostgresConsumer) -> None:
        """Stop tracking a closed consumer (called by the consumer)."""
        self._consumers.discard(consumer)
