"""The publishing face of the memory broker: publish, publish many, publish unique.

Each method is one synchronous call into the store (:meth:`MemoryStore.enqueue
<chicory_memory.store.MemoryStore.enqueue>`), so a batch is all or nothing and a unique
publish checks, claims and enqueues atomically. Unique keys' claims are kept by
:mod:`chicory_memory.unique`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from chicory.broker import OutgoingMessage
from chicory.clock import to_epoch
from chicory.unique import UniqueClaim, check_claim
from chicory_memory import unique
from chicory_memory.base import BrokerBase

__all__ = ["PublishMethods"]


class PublishMethods(BrokerBase):
    """The publishing and ``unique_enqueue`` methods of
    :class:`~chicory_memory.broker.MemoryBroker`."""

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
