"""The publishing face of the PostgreSQL broker: one message, many in one statement, and
messages inside the caller's own transaction (:meth:`PublishMethods.publish_within`)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson

from chicory.broker import OutgoingMessage
from chicory.priority import priority_of
from chicory_postgres.base import PostgresBrokerBase
from chicory_postgres.within import caller_connection

__all__ = ["PublishMethods"]


class PublishMethods(PostgresBrokerBase):
    """The publishing methods of :class:`~chicory_postgres.broker.PostgresBroker`."""

    def _publish_params(
        self, queue: str, messages: Sequence[OutgoingMessage]
    ) -> tuple[list[uuid.UUID], dict[str, Any]]:
        ids = [uuid.uuid4() for _ in messages]
        for message in messages:
            self.check_body(message.body)
            due = message.not_before
            if due is not None and due.tzinfo is None:
                raise ValueError(
                    f"not_before must be an aware datetime (UTC), got the naive {due!r}"
                )
        params = {
            "queue": queue,
            "channel": self._wake_channel,
            "ids": ids,
            "bodies": [m.body for m in messages],
            "headers": [_headers_json(m.headers) for m in messages],
            "run_at": [m.not_before for m in messages],
            "priorities": [priority_of(m.headers.items()) for m in messages],
        }
        return ids, params

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
            ValueError: ``not_before`` is naive.
            MessageTooLargeError: the body exceeds ``max_body_bytes``.
            BrokerConnectionError: PostgreSQL could not be reached.
        """
        ids = await self.publish_many(
            queue, [OutgoingMessage(body=body, headers=headers or {}, not_before=not_before)]
        )
        return ids[0]

    async def publish_many(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Enqueue many messages in one statement (one transaction); return their ids.

        Raises:
            ValueError: a ``not_before`` is naive (nothing is published).
            MessageTooLargeError: a body exceeds ``max_body_bytes`` (nothing is published).
            BrokerConnectionError: PostgreSQL could not be reached (nothing is published,
                or everything, if the connection broke after the commit).
        """
        if not messages:
            return []
        ids, params = self._publish_params(queue, messages)
        await self.register_queues([queue])
        await self.execute(self.sql.publish, params, doing="publishing")
        self.wake_local(queue)
        return [str(i) for i in ids]

    async def publish_within(
        self, connection: object, queue: str, messages: Sequence[OutgoingMessage]
    ) -> list[str]:
        """Enqueue messages on the caller's connection, inside its open transaction.

        They exist (and consumers are notified) only if that transaction commits. Accepts a
        psycopg ``AsyncConnection``, an asyncpg ``Connection`` (a pool's included), and a
        SQLAlchemy ``AsyncSession`` or ``AsyncConnection`` on either driver (see
        :mod:`chicory_postgres.within` and ``docs/postgres.md``).

        Raises:
            CapabilityError: ``connection`` is none of those.
            ValueError / MessageTooLargeError: as :meth:`publish_many` (nothing is sent).
        """
        if not messages:
            return []
        ids, params = self._publish_params(queue, messages)
        conn = await caller_connection(connection)
        await self.register_queues([queue])
        await conn.fetch(self.sql.publish, params)
        return [str(i) for i in ids]


def _headers_json(headers: Mapping[str, str]) -> bytes:
    """Headers as stored: JSON bytes (any string survives, NUL included, unlike jsonb)."""
    return orjson.dumps(dict(headers)) if headers else b"{}"
