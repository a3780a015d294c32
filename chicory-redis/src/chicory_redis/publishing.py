"""The publishing face of the Redis broker: ``publish`` and ``publish_many``.

One message is one plain command (``XADD``, or ``ZADD`` when delayed); a batch goes through
the ``enqueue`` script in pipelined calls (:mod:`chicory_redis.scripts.publishing`). Writes
are sent once, never repeated blindly (:mod:`chicory_redis.sending`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from chicory.broker import OutgoingMessage
from chicory_redis import scripts
from chicory_redis.base import BrokerBase
from chicory_redis.entries import encode_headers, new_message_id, new_message_ids, pack_message
from chicory_redis.keys import QueueKeys
from chicory_redis.sending import Command

__all__ = ["PUBLISH_CHUNK", "PublishMethods"]

PUBLISH_CHUNK = scripts.CHUNK
"""Most messages added by one ``enqueue`` script call (each call runs atomically)."""


class PublishMethods(BrokerBase):
    """The publishing methods of :class:`~chicory_redis.broker.RedisBroker`."""

    async def publish(
        self,
        queue: str,
        body: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        not_before: datetime | None = None,
    ) -> str:
        """Enqueue one message (``XADD``, or ``ZADD`` when delayed); return its id.

        Raises:
            ValueError: ``not_before`` is naive.
            MessageTooLargeError: the body exceeds ``max_body_bytes``.
            BrokerConnectionError: Redis could not be reached.
        """
        ids = await self.publish_many(
            queue, [OutgoingMessage(body=body, headers=headers or {}, not_before=not_before)]
        )
        return ids[0]

    async def publish_many(self, queue: str, messages: Sequence[OutgoingMessage]) -> list[str]:
        """Enqueue many messages in one round trip; return their ids in order.

        One message is one ``XADD`` (or ``ZADD``); more are added by the ``enqueue`` script,
        up to :data:`PUBLISH_CHUNK` messages (or about 1 MiB of them) per call, ready and
        delayed messages in calls of their own, all calls pipelined.

        Raises:
            ValueError: a ``not_before`` is naive (nothing is published).
            MessageTooLargeError: a body exceeds ``max_body_bytes`` (nothing is published).
            BrokerConnectionError: Redis could not be reached; some may have been published.
        """
        if not messages:
            return []
        if queue not in self._registered:
            await self.register_queues([queue])
        k = self._keys.queue(queue)
        if len(messages) == 1:
            return [await self._publish_one(k, messages[0])]
        ids = new_message_ids(len(messages))
        ready: list[bytes] = []
        delayed: list[tuple[int, bytes]] = []  # (due ms, packed)
        limit = self._settings.max_body_bytes
        for message, message_id in zip(messages, ids, strict=True):
            body = message.body
            if len(body) > limit:
                self.check_body(body)
            headers = encode_headers(message.headers).encode() if message.headers else b"{}"
            packed = b"%s\n0\n%s\n%s" % (message_id.encode(), headers, body)
            if message.not_before is None or (due := self.due_ms(message.not_before)) is None:
                ready.append(packed)
            else:
                delayed.append((due, packed))
        keys = (k.stream, k.delayed)
        calls = [
            scripts.Call(scripts.ENQUEUE, keys, (len(chunk), *chunk))
            for chunk in scripts.chunked(ready, len)
        ]
        calls += [
            scripts.Call(scripts.ENQUEUE, keys, (0, *[part for pair in chunk for part in pair]))
            for chunk in scripts.chunked(delayed, lambda pair: len(pair[1]))
        ]
        await self.send([call.command() for call in calls], f"publish to queue {queue!r}")
        return ids

    async def _publish_one(self, k: QueueKeys, message: OutgoingMessage) -> str:
        """One message, one plain command: ``XADD``, or ``ZADD`` when delayed."""
        self.check_body(message.body)
        due = self.due_ms(message.not_before)
        message_id = new_message_id()
        packed = pack_message(message_id, 0, encode_headers(message.headers), message.body)
        command: Command
        if due is None:
            command = ("XADD", k.stream, "*", "m", packed)
        else:
            command = ("ZADD", k.delayed, due, packed)
        await self.send([command], f"publish to queue {k.queue!r}")
        return message_id
