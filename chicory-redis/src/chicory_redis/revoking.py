"""The revocations face of the Redis result backend
(:class:`chicory.revocation.Revocations`): record, list and watch cancelled task ids.

Revocation records are members of one sorted set, ``<p>:revoked``, scored by expiry and
pruned on every write and read; each ``revoke`` also publishes ``<expiry ms> <task id>`` on
one channel, which every worker subscribes to (on a connection of its own).
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from chicory_redis.connection import results_errors
from chicory_redis.results_base import ResultBackendBase

__all__ = ["RevocationMethods"]

log = logging.getLogger("chicory.redis")


def _text(value: bytes | str) -> str:
    """``value`` as text (a client may or may not decode responses)."""
    return value.decode() if isinstance(value, bytes) else value


class RevocationMethods(ResultBackendBase):
    """The revocation methods of :class:`~chicory_redis.results.RedisResultBackend`."""

    async def revoke(self, task_id: str, *, ttl: float) -> None:
        """Record that ``task_id`` is cancelled for ``ttl`` seconds and publish it (one round
        trip, in a transaction).

        Raises:
            ResultBackendError: Redis could not be reached.
            ValueError: ``ttl`` is not a positive number.
        """
        if not ttl > 0 or math.isinf(ttl):
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl!r}")
        now_ms = int(self._clock.time() * 1000)
        expires_ms = now_ms + max(1, int(ttl * 1000))
        keys = self._keys
        pipe = self.client.pipeline(transaction=True)
        pipe.zremrangebyscore(keys.revoked, "-inf", now_ms)
        pipe.zadd(keys.revoked, {task_id: expires_ms}, gt=True)  # adds, or only extends
        pipe.publish(keys.revocation_channel, f"{expires_ms} {task_id}")
        with results_errors(self.display_url, f"revoke task {task_id}"):
            await pipe.execute()

    async def revocations(self) -> dict[str, float]:
        """Every live revocation record: task id -> expiry (seconds since the epoch).

        Raises:
            ResultBackendError: Redis could not be reached.
        """
        now_ms = int(self._clock.time() * 1000)
        with results_errors(self.display_url, "read revocation records"):
            pairs: Any = await self.client.zrangebyscore(
                self._keys.revoked, f"({now_ms}", "+inf", withscores=True
            )
        return {_text(member): float(score) / 1000 for member, score in pairs}

    @asynccontextmanager
    async def watch_revocations(self) -> AsyncIterator[AsyncIterator[tuple[str, float]]]:
        """Subscribe (on a connection of its own) to revocations as they are published.

        The iterator raises :class:`~chicory.errors.ResultBackendError` when the connection
        drops; subscribe again then.

        Raises:
            ResultBackendError: Redis could not be reached.
        """
        pubsub = self.client.pubsub()
        try:
            with results_errors(self.display_url, "subscribe to revocations"):
                await pubsub.subscribe(self._keys.revocation_channel)
            yield self._revocations_from(pubsub)
        finally:
            await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _revocations_from(self, pubsub: Any) -> AsyncIterator[tuple[str, float]]:
        while True:
            with results_errors(self.display_url, "receive revocations"):
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
            if message is None or message.get("type") != "message":
                continue
            data = message.get("data")
            text = data.decode(errors="replace") if isinstance(data, bytes) else str(data)
            expires, _, task_id = text.partition(" ")
            if not expires.isdigit() or not task_id:
                log.warning("ignoring a malformed revocation message %r", text[:200])
                continue
            yield task_id, int(expires) / 1000
