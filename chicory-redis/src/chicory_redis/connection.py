"""Building the ``redis.asyncio`` client, translating its errors, and reconnect back-off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

from chicory.errors import BrokerConnectionError, BrokerError, ResultBackendError
from chicory_redis.config import RedisSettings

__all__ = ["CONNECTION_ERRORS", "Backoff", "broker_errors", "create_client", "results_errors"]

CONNECTION_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)
"""Errors that mean the server could not be reached (the operation may be retried)."""


def create_client(settings: RedisSettings) -> Redis:
    """Return a client on a bounded, blocking connection pool (bytes in, bytes out)."""
    connection_class: type[AbstractConnection] = Connection
    if settings.scheme == "rediss":
        connection_class = SSLConnection
    elif settings.scheme == "unix":
        connection_class = UnixDomainSocketConnection
    pool = BlockingConnectionPool(
        connection_class=connection_class,
        max_connections=settings.max_connections,
        timeout=settings.pool_timeout,
        **settings.connection_kwargs(),
    )
    client = Redis(connection_pool=pool, decode_responses=False)
    # XREADGROUP replies stay as Redis sends them (nested lists): the consumer reads entries
    # by position, which is much cheaper than redis-py building a dict per entry.
    client.set_response_callback("XREADGROUP", _unparsed)
    return client


def _unparsed(response: Any, **_options: Any) -> Any:
    return response


@contextmanager
def broker_errors(display_url: str, action: str) -> Iterator[None]:
    """Turn redis-py errors into Chicory broker errors naming the (redacted) server.

    Raises:
        BrokerConnectionError: the server could not be reached.
        BrokerError: the server refused the command.
    """
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise BrokerConnectionError(
            f"could not {action}: Redis at {display_url} is unreachable ({exc}); "
            "check that the server is up, then retry"
        ) from exc
    except redis_errors.RedisError as exc:
        raise BrokerError(f"could not {action} on Redis at {display_url}: {exc}") from exc


@contextmanager
def results_errors(display_url: str, action: str) -> Iterator[None]:
    """Turn redis-py errors into :class:`~chicory.errors.ResultBackendError`."""
    try:
        yield
    except (*CONNECTION_ERRORS, redis_errors.RedisError) as exc:
        raise ResultBackendError(
            f"could not {action} on the Redis result backend at {display_url}: {exc}"
        ) from exc


class Backoff:
    """Capped exponential back-off between reconnection attempts.

    Args:
        first: The first pause in seconds.
        cap: The longest pause in seconds.
    """

    def __init__(self, first: float, cap: float) -> None:
        self._first = first
        self._cap = cap
        self.failures = 0

    def next_pause(self) -> float:
        """Count one more failure and return how long to pause before the next attempt."""
        self.failures += 1
        return min(self._cap, self._first * float(2 ** min(self.failures - 1, 30)))

    def reset(self) -> None:
        """Forget past failures (call after a success)."""
        self.failures = 0
