"""What the faces of the Redis result backend share: settings, keys, clock, client, waiters.

:class:`~chicory_redis.results.RedisResultBackend` (lifecycle, task records and waiting,
progress, joins, heartbeats) is this base plus the revocations face
(:mod:`chicory_redis.revoking`).
"""

from __future__ import annotations

from redis.asyncio import Redis

from chicory.clock import Clock, SystemClock
from chicory.errors import ResultBackendError
from chicory_redis.config import RedisSettings
from chicory_redis.keys import KeySpace
from chicory_redis.waiters import ResultWaiters

__all__ = ["ResultBackendBase"]


class ResultBackendBase:
    """The state every face of :class:`~chicory_redis.results.RedisResultBackend` uses.

    Args:
        settings: Connection settings (default: ``redis://localhost:6379/0``).
        clock: Source of time for expiry scores (default: the real clock).
    """

    def __init__(self, settings: RedisSettings | None = None, *, clock: Clock | None = None):
        self._settings = settings if settings is not None else RedisSettings()
        self._keys = KeySpace(self._settings.key_prefix)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._client: Redis | None = None
        self._waiters = ResultWaiters(lambda: self.client, self._keys, self._settings)

    @property
    def settings(self) -> RedisSettings:
        """The backend's settings."""
        return self._settings

    @property
    def keys(self) -> KeySpace:
        """The key names this backend uses."""
        return self._keys

    @property
    def waiters(self) -> ResultWaiters:
        """Everything waiting for a final record (how many, and the reads they cost)."""
        return self._waiters

    @property
    def display_url(self) -> str:
        """The server URL with the password redacted."""
        return self._settings.display_url

    @property
    def client(self) -> Redis:
        """The connected client.

        Raises:
            ResultBackendError: the backend is not connected.
        """
        if self._client is None:
            raise ResultBackendError(
                "the Redis result backend is not connected; use 'async with backend:'"
            )
        return self._client
