"""``example://``: a small but complete Chicory broker on SQLite.

URLs::

    example://                       a private in-memory database (this broker object only)
    example:///var/lib/app/q.sqlite  a database file several processes can share
    example://?lease_seconds=60&max_deliveries=5

It implements every capability except priorities, with timed leases (it declares the
``lease_seconds`` it is built with, so workers renew in time). It is written to be read: each
operation is one transaction in :mod:`chicory_example_plugin.store`; consumers and deliveries
(:mod:`chicory_example_plugin.consumer`) are thin handles on it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

import anyio

from chicory.broker import Capabilities, DeadLetter, OutgoingMessage, QueueCounts
from chicory.clock import to_epoch
from chicory.errors import BrokerError, ConfigurationError, MessageTooLargeError
from chicory_example_plugin.consumer import ExampleConsumer
from chicory_example_plugin.store import Store

__all__ = ["ExampleBroker"]


class ExampleBroker:
    """A SQLite-backed broker.

    Args:
        path: Database file, or ``":memory:"`` (the default) for a private database.
        lease_seconds: How long a fetched delivery stays invisible to other consumers.
        max_deliveries: Dead-letter instead of delivering a message a ``max + 1``-th time.
        max_body_bytes: Largest body accepted, or ``None`` for no limit.

    Raises:
        ConfigurationError: an option is out of range.
    """

    def __init__(
        self,
        path: str = ":memory:",
        *,
        lease_seconds: float = 30.0,
        max_deliveries: int | None = None,
        max_body_bytes: int | None = None,
    ) -> None:
        if not lease_seconds > 0:
            raise ConfigurationError(f"lease_seconds must be positive, got {lease_seconds}")
        if max_deliveries is not None and max_deliveries < 1:
            raise ConfigurationError(f"max_deliveries must be at least 1, got {max_deliveries}")
        self.path = path
        self.shared = path != ":memory:"
        self._options = (lease_seconds, max_deliveries)
        self._max_body_bytes = max_body_bytes
        self._capabilities = Capabilities(
            delayed_delivery=True,
            lease_renewal=True,
            lease_seconds=lease_seconds,  # workers renew every third of it
            dead_letter=True,
            fifo=True,
            atomic_retry=True,
            shared=self.shared,
            max_body_bytes=max_body_bytes,
            delete_queue=True,
        )
        self._store: Store | None = None
        self._connected = False
        self._consumers: set[ExampleConsumer] = set()
        self._changed: anyio.Event | None = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> ExampleBroker:
        """Build a broker from an ``example://`` URL; keyword ``options`` override its query.

        Raises:
            ConfigurationError: not an ``example://`` URL, or an unknown option.
        """
        parts = urlsplit(url)
        if parts.scheme != "example":
            raise ConfigurationError(f"expected an example:// URL, got {url!r}")
        kinds: dict[str, Any] = {
            "lease_seconds": float,
            "max_deliveries": int,
            "max_body_bytes": int,
        }
        parsed: dict[str, Any] = {}
        for name, raw in parse_qsl(parts.query):
            if name not in kinds:
                raise ConfigurationError(f"unknown option {name!r} in {url!r}")
            parsed[name] = kinds[name](raw)
        parsed.update(options)
        return cls(parts.path or ":memory:", **parsed)

    def __repr__(self) -> str:
        return f"<ExampleBroker {self.path}>"

    @property
    def capabilities(self) -> Capabilities:
        """Everything but priorities; ``shared`` when backed by a file."""
        return self._capabilities

    @property
    def store(self) -> Store:
        """The database (raises if the broker is not connected)."""
        if self._store is None or not self._connected:
            raise BrokerError("the example broker is not connected; use 'async with broker:'")
        return self._store

    # -- lifecycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the database. Idempotent."""
        if self._store is None:
            lease_seconds, max_deliveries = self._options
            self._store = Store(self.path, lease_seconds, max_deliveries)
        self._connected = True

    async def close(self) -> None:
        """Close every consumer (handing back what it holds), then the database. Idempotent.

        An in-memory database lives as long as this object, so its messages survive a
        ``close()`` followed by ``connect()``, like a server outliving its clients.
        """
        for consumer in list(self._consumers):
            await consumer.close()
        self._connected = False
        if self._store is not None and self.shared:
            self._store.close()
            self._store = None

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

    # -- change notification (in-process; other processes are polled) ----------------------

    def wake(self) -> None:
        """Wake every fetch waiting in this process."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait_for_change(self, timeout: float) -> None:
        """Sleep until :meth:`wake` or ``timeout`` seconds, whichever comes first."""
        if self._changed is None:
            self._changed = anyio.Event()
        event = self._changed
        with anyio.move_on_after(timeout):
            await event.wait()

    def forget(self, consumer: ExampleConsumer) -> None:
        """Stop tracking a closed consumer."""
        self._consumers.discard(consumer)

    # -- publishing ------------------------------------------------------------------------

    async def publish(
        self,
        queue: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        not_before: datetime | None = None,
    ) -> str:
        """Enqueue one message; return its id.

        Raises:
            MessageTooLargeError: the body is over ``max_body_bytes``.
            BrokerError: the broker is not connected.
        """
        (message_id,) = await self.publish_many(
            queue, [OutgoingMessage(body=body, headers=headers or {}, not_before=not_before)]
        )
        return message_id

    async def publish_many(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Enqueue many messages in one transaction; return their ids in order."""
        now = time.time()
        items = []
        for message in messages:
            if self._max_body_bytes is not None and len(message.body) > self._max_body_bytes:
                raise MessageTooLargeError(
                    f"body of {len(message.body)} bytes is over the {self._max_body_bytes}-byte"
                    " limit of this broker"
                )
            due = to_epoch(message.not_before) if message.not_before is not None else now
            items.append((message.body, message.headers, due))
        ids = self.store.enqueue(queue, items)
        self.wake()
        return ids

    # -- consuming -------------------------------------------------------------------------

    def consume(self, queues: Sequence[str], *, prefetch: int) -> ExampleConsumer:
        """Open a consumer on ``queues`` holding at most ``prefetch`` deliveries."""
        if isinstance(queues, str) or not queues or prefetch < 1:
            raise ValueError("consume() needs a list of queue names and a prefetch of at least 1")
        self.store  # noqa: B018 - raises if not connected
        consumer = ExampleConsumer(self, queues, prefetch)
        self._consumers.add(consumer)
        return consumer

    # -- inspection and dead letters -------------------------------------------------------

    async def counts(self, queue: str) -> QueueCounts:
        """Current counts of ``queue``."""
        return self.store.counts(queue, time.time())

    async def dead_letters(self, queue: str, *, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` dead letters of ``queue``, oldest first."""
        return self.store.dead_letters(queue, limit)

    async def replay_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Put a dead letter back on its queue; False if unknown."""
        replayed = self.store.replay(queue, dead_letter_id, time.time())
        self.wake()
        return replayed

    async def delete_dead_letter(self, queue: str, dead_letter_id: str) -> bool:
        """Delete one dead letter; False if unknown."""
        return self.store.delete_dead_letter(queue, dead_letter_id)

    async def purge_dead_letters(self, queue: str) -> int:
        """Delete every dead letter of ``queue``; return how many."""
        return self.store.purge_dead_letters(queue)

    async def delete_queue(self, queue: str) -> None:
        """Delete ``queue``: its messages and dead letters (its consumers must be closed)."""
        self.store.delete_queue(queue)
