"""Building the ``redis.asyncio`` client, translating its errors, and reconnect back-off.

Stale connections: a pooled connection the server closed (an idle timeout, ``CLIENT KILL``,
a restart) is replaced when it is taken from the pool, so the next command does not fail
on it. redis-py does that check only with its "maintenance notifications" off, a feature
of managed Redis services that speaks RESP3 only, which Chicory does not use: the client is
built with them off. A connection that dies while a command is on it still fails that
command; idempotent scripts and reads are then repeated once (:mod:`chicory_redis.scripts`),
and writes that must not be repeated report whether they may have been made
(:mod:`chicory_redis.sending`).

Commands are packed by hiredis (C) rather than by redis-py's Python packer: the same bytes
on the wire at about a tenth of the cost per argument, which matters for the thousands of
arguments of a batched publish or a batched result read. Whatever hiredis does not pack
exactly as redis-py would (a first argument with a space, which redis-py splits; a type
hiredis refuses, such as ``bool``, which redis-py refuses with its own message) goes
through redis-py's packer.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import hiredis
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

from chicory.errors import (
    BrokerAuthenticationError,
    BrokerConnectionError,
    BrokerError,
    ResultBackendAuthenticationError,
    ResultBackendError,
)
from chicory_redis.config import RedisSettings

__all__ = [
    "AUTH_ERRORS",
    "CONNECTION_ERRORS",
    "Backoff",
    "auth_message",
    "broker_errors",
    "create_client",
    "is_auth_error",
    "results_errors",
]

CONNECTION_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)
"""Errors that mean the server could not be reached (the operation may be retried)."""

AUTH_ERRORS: tuple[type[Exception], ...] = (
    redis_errors.AuthenticationError,
    redis_errors.AuthenticationWrongNumberOfArgsError,
    redis_errors.NoPermissionError,
    # Newer redis-py versions only.
    *([] if (e := getattr(redis_errors, "AuthorizationError", None)) is None else [e]),
)
"""Errors that mean the server refused the credentials or an ACL refused a command:
retrying with the same settings does not help. (Authentication errors are ``ConnectionError``
subclasses in redis-py, so they must be told apart before ``CONNECTION_ERRORS``.)"""


def is_auth_error(exc: BaseException) -> bool:
    """Whether ``exc`` is a refusal of the credentials or permissions, not a lost server."""
    return isinstance(exc, AUTH_ERRORS)


def auth_message(display_url: str, exc: BaseException) -> str:
    """A message for a refused login or command that names the (redacted) server."""
    if isinstance(exc, redis_errors.NoPermissionError):
        return (
            f"Redis at {display_url} refused a command for lack of permission ({exc}); "
            "grant the Redis user the commands and keys Chicory needs (docs/redis.md)"
        )
    return (
        f"authentication failed for {display_url} ({exc}); check the password (and the "
        "user name, with Redis ACLs)"
    )


class _HiredisPacking(AbstractConnection):
    """Packs commands with hiredis where that gives redis-py's bytes (module docstring)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        first = args[0] if args else None
        single = type(first) is str and " " not in first  # a name redis-py does not split
        if not single and type(first) is bytes:
            single = b" " not in first
        encoder = self.encoder
        if single and encoder.encoding in _UTF8 and encoder.encoding_errors == "strict":
            try:
                return [hiredis.pack_command(args)]
            except (TypeError, UnicodeError):
                pass  # redis-py's packer decides, and names the problem
        return super().pack_command(*args)


_UTF8 = frozenset({"utf-8", "utf8", "UTF-8"})


class _Connection(_HiredisPacking, Connection):
    pass


class _SSLConnection(_HiredisPacking, SSLConnection):
    pass


class _UnixDomainSocketConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


def create_client(settings: RedisSettings) -> Redis:
    """Return a client on a bounded, blocking connection pool (bytes in, bytes out)."""
    connection_class: type[AbstractConnection] = _Connection
    if settings.scheme == "rediss":
        connection_class = _SSLConnection
    elif settings.scheme == "unix":
        connection_class = _UnixDomainSocketConnection
    pool = BlockingConnectionPool(
        connection_class=connection_class,
        max_connections=settings.max_connections,
        timeout=settings.pool_timeout,
        **_no_maintenance_notifications(),
        **settings.connection_kwargs(),
    )
    client = Redis(connection_pool=pool, decode_responses=False)
    # XREADGROUP replies stay as Redis sends them (nested lists): the consumer reads entries
    # by position, which is much cheaper than redis-py building a dict per entry.
    client.set_response_callback("XREADGROUP", _unparsed)
    return client


def _unparsed(response: Any, **_options: Any) -> Any:
    return response


def _no_maintenance_notifications() -> dict[str, Any]:
    """Pool options turning redis-py's maintenance notifications off (see the module
    docstring); none for a redis-py that predates them."""
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # pragma: no cover - redis-py before 7
        return {}
    return {"maint_notifications_config": MaintNotificationsConfig(enabled=False)}


@contextmanager
def broker_errors(display_url: str, action: str) -> Iterator[None]:
    """Turn redis-py errors into Chicory broker errors naming the (redacted) server.

    Raises:
        BrokerConnectionError: the server could not be reached.
        BrokerError: the server refused the command.
    """
    try:
        yield
    except redis_errors.RedisError as exc:
        if is_auth_error(exc):
            raise BrokerAuthenticationError(auth_message(display_url, exc)) from exc
        if not isinstance(exc, CONNECTION_ERRORS):
            raise BrokerError(f"could not {action} on Redis at {display_url}: {exc}") from exc
        raise BrokerConnectionError(
            f"could not {action}: Redis at {display_url} is unreachable ({exc}); "
            "check that the server is up, then retry"
        ) from exc
    except OSError as exc:
        raise BrokerConnectionError(
            f"could not {action}: Redis at {display_url} is unreachable ({exc}); "
            "check that the server is up, then retry"
        ) from exc


@contextmanager
def results_errors(display_url: str, action: str) -> Iterator[None]:
    """Turn redis-py errors into :class:`~chicory.errors.ResultBackendError`."""
    try:
        yield
    except (*CONNECTION_ERRORS, redis_errors.RedisError) as exc:
        if is_auth_error(exc):
            raise ResultBackendAuthenticationError(auth_message(display_url, exc)) from exc
        raise ResultBackendError(
            f"could not {action} on the Redis result backend at {display_url}: {exc}"
        ) from exc


class Backoff:
    """Capped exponential back-off between reconnection attempts, with jitter.

    Each pause is drawn between half and all of ``first * 2 ** (failures - 1)`` (at most
    ``cap``), so many clients that lost the same server do not all come back in step.

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
        pause = min(self._cap, self._first * float(2 ** min(self.failures - 1, 30)))
        return pause * random.uniform(0.5, 1.0)

    def reset(self) -> None:
        """Forget past failures (call after a success)."""
        self.failures = 0
