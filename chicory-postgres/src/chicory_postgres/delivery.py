"""Deliveries of the PostgreSQL broker: one claimed message and its settles.

Each claim gives a message a new ``token``; every settle and renewal names the token, so one
that comes after the lease ran out and another consumer claimed the message changes nothing.
Claiming, prefetch room and renewals in bulk are the consumer's
(:mod:`chicory_postgres.consumer`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson

from chicory.errors import DeliveryStateError
from chicory.priority import priority_of

if TYPE_CHECKING:
    from chicory_postgres.consumer import PostgresConsumer

__all__ = ["PostgresDelivery"]


class PostgresDelivery:
    """One claimed message; the first settle takes effect, later ones do nothing."""

    __slots__ = (
        "_acked",
        "_consumer",
        "_deadline",
        "_settled",
        "body",
        "delivery_count",
        "headers",
        "id",
        "queue",
        "token",
    )

    def __init__(
        self,
        consumer: PostgresConsumer,
        row: tuple[Any, ...],
        deadline: float,
    ) -> None:
        message_id, queue, body, headers, count, token = row[:6]
        self._consumer = consumer
        self.id: uuid.UUID = message_id
        self.queue: str = queue
        self.body: bytes = bytes(body)
        self.headers: Mapping[str, str] = orjson.loads(headers)
        self.delivery_count: int = count
        self.token: uuid.UUID = token
        self._deadline = deadline  # local monotonic estimate of the lease end
        self._settled = False
        self._acked = False

    @property
    def message_id(self) -> str:
        """Broker-assigned id of the message, stable across redeliveries."""
        return str(self.id)

    @property
    def consumer(self) -> PostgresConsumer:
        """The consumer that fetched this delivery."""
        return self._consumer

    @property
    def settled(self) -> bool:
        """Whether a settle was made (it may have found the lease lost)."""
        return self._settled

    def leased_locally(self, now: float) -> bool:
        """Whether, by this process's estimate, the lease still runs (for prefetch room)."""
        return not self._settled and self._deadline > now

    def renewed(self, seconds: float) -> None:
        """Move the local estimate of the lease end after a renewal."""
        self._deadline = time.monotonic() + seconds

    def mark_settled(self, *, acked: bool = False) -> bool:
        """Mark settled; False if it already was.

        Raises:
            DeliveryStateError: the consumer was closed before the settle.
        """
        if self._settled:
            return False
        if self._consumer.closed:
            raise DeliveryStateError(
                f"message {self.message_id} was handed back when its consumer closed; "
                "it can no longer be settled"
            )
        self._settled = True
        self._acked = acked
        self._consumer.forget(self)
        return True

    async def ack(self) -> None:
        """Delete the message for good (nothing happens if the lease was lost)."""
        await self._consumer.ack_many([self])

    async def nack(self, *, requeue: bool = True, delay: float | None = None) -> None:
        """Put the message back at the end of its queue (after ``delay`` s), or drop it."""
        if not self.mark_settled():
            return
        broker = self._consumer.broker
        if requeue:
            await broker.execute(
                broker.sql.requeue,
                {"id": self.id, "token": self.token, "delay": max(delay or 0.0, 0.0)},
                doing="requeueing a message",
            )
            broker.wake_local(self.queue)
        else:
            await broker.execute(
                broker.sql.ack, {"ids": [self.id], "tokens": [self.token]}, doing="dropping"
            )

    async def retry(
        self, body: bytes, headers: Mapping[str, str], *, not_before: datetime | None
    ) -> None:
        """Publish the replacement and delete this message in one statement."""
        broker = self._consumer.broker
        broker.check_body(body)
        if not self.mark_settled():
            return
        await broker.execute(
            broker.sql.retry,
            {
                "id": self.id,
                "token": self.token,
                "new_id": uuid.uuid4(),
                "body": body,
                "headers": orjson.dumps(dict(headers)),
                "run_at": not_before,
                "priority": priority_of(headers.items()),
            },
            doing="retrying a message",
        )
        broker.wake_local(self.queue)

    async def extend_lease(self, seconds: float | None = None) -> None:
        """Renew the lease: it ends ``seconds`` (at most the lease) after this reaches the
        server."""
        if not self._settled:
            await self._consumer.renew([self], seconds)

    async def dead_letter(self, reason: str) -> None:
        """Move the message to the dead letters; after an ack, record a copy."""
        broker = self._consumer.broker
        if self._acked:
            await broker.execute(
                broker.sql.dead_letter_copy,
                {
                    "queue": self.queue,
                    "id": self.id,
                    "body": self.body,
                    "headers": orjson.dumps(dict(self.headers)),
                    "reason": reason,
                    "count": self.delivery_count,
                },
                doing="recording a dead letter",
            )
        elif self.mark_settled():
            await broker.execute(
                broker.sql.dead_letter,
                {"id": self.id, "token": self.token, "reason": reason},
                doing="dead-lettering a message",
            )
