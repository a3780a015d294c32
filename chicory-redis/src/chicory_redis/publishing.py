"""The publishing face of the Redis broker: ``publish`` and ``publish_many``.

One message is one plain command (``XADD``, or ``ZADD`` when delayed); a batch goes through
the ``enqueue`` script in pipelined calls (:mod:`chicory_redis.scripts.publishing`). Writes
are sent once, never repeated blindly (:mod:`chicory_redis.sending`).

A ready message with a priority above 0 goes to its priority's stream, and the priority into
the queue's levels set (``SADD``, in the same round trip); a delayed one goes to the delayed
set like any other, and is routed when it falls due (:mod:`chicory_redis.levels`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from chicory.broker import OutgoingMessage
from chicory_redis import scripts
from chicory_redis.base import BrokerBase
from chicory_redis.entries import encode_headers, new_message_id, new_message_ids, pack_message
from chicory_redis.keys import QueueKeys
from chicory_redis.levels import level_of
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
        ready: list[bytes] = []  # priority 0
        ranked: dict[int, list[bytes]] = {}  # priority 1 to 9
        delayed: list[tuple[int, bytes]] = []  # (due ms, packed)
        limit = self._settings.max_body_bytes
        for message, message_id in zip(messages, ids, strict=True):
            body = message.body
            if len(body) > limit:
                self.check_body(body)
            headers = encode_headers(message.headers).encode() if message.headers else b"{}"
            packed = b"%s\n0\n%s\n%s" % (message_id.encode(), headers, body)
            if message.not_before is None or (due := self.due_ms(message.not_before)) is None:
                if message.headers and (level := level_of(message.headers)):
                    ranked.setdefault(level, []).append(packed)
                else:
                    ready.append(packed)
            else:
                delayed.append((due, packed))
        keys = (k.stream, k.delayed)
        calls = [
            scripts.Call(scripts.ENQUEUE, keys, (len(chunk), *chunk))
            for chunk in scripts.chunked(ready, len)
        ]
        for level, packed_messages in ranked.items():
            level_keys = (k.at_level(level).stream, k.delayed)
            calls += [
                scripts.Call(scripts.ENQUEUE, level_keys, (len(chunk), *chunk))
                for chunk in scripts.chunked(packed_messages, len)
            ]
        calls += [
            scripts.Call(scripts.ENQUEUE, keys, (0, *[part for pair in chunk for part in pair]))
            for chunk in scripts.chunked(delayed, lambda pair: len(pair[1]))
        ]
        commands: list[Command] = [call.command() for call in calls]
        if ranked:  # first, so the level is recorded whenever a message of it is
            commands.insert(0, ("SADD", k.levels, *ranked))
        await self.send(commands, f"publish to queue {queue!r}")
        return ids

    async def _publish_one(self, k: QueueKeys, message: OutgoingMessage) -> str:
        """One message, one plain command: ``XADD``, or ``ZADD`` when delayed (a priority
        above 0 adds its level to the queue's levels set, in the same round trip)."""
        self.check_body(message.body)
        due = self.due_ms(message.not_before)
        message_id = new_message_id()
        packed = pack_message(message_id, 0, encode_headers(message.headers), message.body)
        commands: list[Command]
        if due is not None:
            commands = [("ZADD", k.delayed, due, packed)]  # moved to its priority's stream
        elif message.headers and (level := level_of(message.headers)):
            commands = [
                ("SADD", k.levels, level),
                ("XADD", k.at_level(level).stream, "*", "m", packed),
            ]
        else:
            commands = [("XADD", k.stream, "*", "m", packed)]
        await self.send(commands, f"publish to queue {k.queue!r}")
        return message_id
