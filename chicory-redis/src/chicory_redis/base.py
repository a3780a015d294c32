"""What every face of the Redis broker shares: its settings, keys, clock and connection.

:class:`BrokerBase` holds the state; the faces (:mod:`chicory_redis.publishing`,
:mod:`chicory_redis.dead_letters`, :mod:`chicory_redis.admin`, :mod:`chicory_redis.flow`)
add the protocol methods, and :class:`~chicory_redis.broker.RedisBroker` puts them together.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from redis.asyncio import Redis

from chicory.clock import Clock, SystemClock, to_epoch
from chicory.errors import BrokerError, MessageTooLargeError
from chicory_redis import scripts, sending
from chicory_redis.config import RedisSettings
from chicory_redis.connection import broker_errors
from chicory_redis.keys import KeySpace, QueueKeys
from chicory_redis.ledger import Ledger
from chicory_redis.sending import Command

__all__ = ["BrokerBase"]


class BrokerBase:
    """The state and helpers every face of :class:`~chicory_redis.broker.RedisBroker` uses.

    Args:
        settings: Connection and behaviour settings (default: ``redis://localhost:6379/0``).
        clock: Source of time for delayed messages and ``dead_at`` (default: the real clock).
    """

    def __init__(self, settings: RedisSettings | None = None, *, clock: Clock | None = None):
        self._settings = settings if settings is not None else RedisSettings()
        self._keys = KeySpace(self._settings.key_prefix)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._client: Redis | None = None
        self._registered: set[str] = set()  # queues this broker added to the queue registry

    @property
    def settings(self) -> RedisSettings:
        """The broker's settings."""
        return self._settings

    @property
    def keys(self) -> KeySpace:
        """The key names this broker uses."""
        return self._keys

    @property
    def clock(self) -> Clock:
        """The broker's clock."""
        return self._clock

    @property
    def display_url(self) -> str:
        """The server URL with the password redacted."""
        return self._settings.display_url

    @property
    def client(self) -> Redis:
        """The connected ``redis.asyncio`` client.

        Raises:
            BrokerError: the broker is not connected.
        """
        if self._client is None:
            raise BrokerError("the Redis broker is not connected; use 'async with broker:'")
        return self._client

    @property
    def client_or_none(self) -> Redis | None:
        """The client, or ``None`` when not connected."""
        return self._client

    def check_body(self, body: bytes) -> None:
        """Raise :class:`MessageTooLargeError` if ``body`` is over ``max_body_bytes``."""
        limit = self._settings.max_body_bytes
        if len(body) > limit:
            raise MessageTooLargeError(
                f"message body is {len(body)} bytes; the Redis broker accepts at most {limit} "
                "(raise max_body_bytes, up to 512 MiB, or send less data)"
            )

    def due_ms(self, not_before: datetime | None) -> int | None:
        """``not_before`` in ms since the epoch, or ``None`` when it is not in the future.

        Raises:
            ValueError: ``not_before`` is naive.
        """
        if not_before is None:
            return None
        at = to_epoch(not_before)
        return Ledger.due_ms(at) if at > self._clock.time() else None

    async def send(self, commands: Sequence[Command], what: str) -> list[Any]:
        """Run writes that must not be repeated blindly; see :func:`chicory_redis.sending.send`.

        Raises:
            BrokerConnectionError: Redis could not be reached; nothing was written.
            PublishOutcomeUnknownError: the connection failed after the commands were sent,
                so they may or may not have run.
            BrokerAuthenticationError: Redis refused the credentials or the command.
            BrokerError: Redis refused a command (the others may have run).
        """
        return await sending.send(self.client, self._settings, commands, what)

    async def register_queues(self, queues: Sequence[str]) -> None:
        """Add ``queues`` to the queue registry (``SADD``), once per queue per broker.

        Called by the first publish to a queue and by consumers joining a queue's group, so
        ``chicory queues`` finds a queue nobody consumes.

        Raises:
            BrokerConnectionError: Redis could not be reached.
        """
        new = [queue for queue in queues if queue not in self._registered]
        if not new:
            return
        with broker_errors(self.display_url, "register queues"):
            await self.client.sadd(self._keys.queues, *new)
        self._registered.update(new)

    def _trim_dead_call(self, k: QueueKeys) -> scripts.Call:
        """Drop the dead letters of a queue over the limits (before listing or counting)."""
        return scripts.Call(scripts.TRIM_DEAD, (k.dead,), self._settings.dead_letter_limits())

    async def _trim_dead(self, queues: Sequence[str]) -> None:
        """Drop the dead letters of ``queues`` over the limits (one round trip)."""
        calls = [self._trim_dead_call(self._keys.queue(queue)) for queue in queues]
        with broker_errors(self.display_url, "trim dead letters"):
            for result in await scripts.run_many(self.client, calls):
                if isinstance(result, Exception):
                    raise result
