"""Writes that must not be repeated blindly: sent once, and failures told apart by when.

Reads and Chicory's settle scripts are safe to repeat (each settle script checks that the
entry is still this consumer's before it acts), so a connection error there is handled by
trying again. A publish is not: an ``XADD`` repeated after a lost reply enqueues the message
twice. redis-py's command path reports a failure *before* the command reached the server
and one *after* it the same way (``ConnectionError`` or ``TimeoutError``), so these writes
take their connection from the pool themselves and tell the two apart:

1. taking a connection from the pool (the pool replaces one the server closed), connecting
   it, and its health check (a ``PING`` once it sat idle for ``health_check_interval``)
   all happen before any byte of the command is sent. A failure there means nothing was
   sent: :class:`NotSent`, which the caller may retry (and does, with back-off, for up to
   ``reconnect_timeout``). So does a ``LOADING`` reply (a restarted server still reading
   its data), which Redis gives without running the command;
2. a failure while the command is sent or its reply read means the server may have run
   it: the error is raised as it is, and the caller reports the outcome as unknown.

Several commands go in one write and their replies are read in order (a pipeline without a
transaction); an error reply is returned in its place, not raised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from chicory.errors import (
    BrokerAuthenticationError,
    BrokerConnectionError,
    BrokerError,
    PublishOutcomeUnknownError,
)
from chicory_redis import scripts
from chicory_redis.config import RedisSettings
from chicory_redis.connection import CONNECTION_ERRORS, Backoff, auth_message, is_auth_error

__all__ = ["Command", "NotSent", "send", "send_once"]

Command = Sequence[str | bytes | int | float]
"""One command with its arguments, as sent."""


class NotSent(Exception):
    """Nothing of the commands reached the server; ``cause`` says why."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


async def send_once(client: Redis, commands: Sequence[Command]) -> list[Any]:
    """Send ``commands`` in one write on one pooled connection; return their replies.

    Returns:
        One reply per command, in order; an error reply is a ``ResponseError`` in its
        place.

    Raises:
        NotSent: nothing was sent (see the module docstring).
        redis.exceptions.ConnectionError: the connection failed after sending began.
        redis.exceptions.TimeoutError: no reply within the socket timeout after sending.
    """
    pool = client.connection_pool
    try:
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
    except CONNECTION_ERRORS as exc:
        raise NotSent(exc) from exc
    try:
        try:
            await connection.check_health()
        except CONNECTION_ERRORS as exc:
            await connection.disconnect(nowait=True)
            raise NotSent(exc) from exc
        try:
            await connection.send_packed_command(
                connection.pack_commands(commands), check_health=False
            )
            replies: list[Any] = []
            for _ in commands:
                try:
                    replies.append(await connection.read_response())
                except (redis_errors.ResponseError, redis_errors.BusyLoadingError) as exc:
                    replies.append(exc)
        except BaseException:
            await connection.disconnect(nowait=True)  # replies may be left unread on it
            raise
    finally:
        await pool.release(connection)
    if all(isinstance(reply, redis_errors.BusyLoadingError) for reply in replies):
        raise NotSent(replies[0])  # refused while loading, so none of them ran
    return replies


async def send(
    client: Redis, settings: RedisSettings, commands: Sequence[Command], what: str
) -> list[Any]:
    """Run writes that must not be repeated blindly, sent with :func:`send_once`.

    While nothing was sent (Redis down, restarting, loading), tries again with the
    reconnect back-off for up to ``reconnect_timeout`` seconds. Scripts the server lost
    are loaded and their calls repeated (a ``NOSCRIPT`` reply means they did not run).

    Args:
        commands: Commands sent in one write.
        what: What they do, for error messages ("publish to queue 'q'").

    Returns:
        Their replies.

    Raises:
        BrokerConnectionError: Redis could not be reached; nothing was written.
        PublishOutcomeUnknownError: the connection failed after the commands were sent,
            so they may or may not have run.
        BrokerAuthenticationError: Redis refused the credentials or the command.
        BrokerError: Redis refused a command (the others may have run).
    """
    backoff: Backoff | None = None
    loop = asyncio.get_running_loop()
    give_up = loop.time() + settings.reconnect_timeout
    while True:
        try:
            replies = await send_once(client, commands)
        except NotSent as exc:
            cause = exc.cause
            if is_auth_error(cause):
                raise BrokerAuthenticationError(
                    auth_message(settings.display_url, cause)
                ) from cause
            backoff = backoff or Backoff(settings.reconnect_backoff, settings.reconnect_backoff_max)
            pause = backoff.next_pause()
            if loop.time() + pause > give_up:
                raise BrokerConnectionError(
                    f"could not {what}: Redis at {settings.display_url} is unreachable "
                    f"({cause}); nothing was written, so retrying cannot duplicate it"
                ) from cause
            await asyncio.sleep(pause)
            continue
        except CONNECTION_ERRORS as exc:
            raise PublishOutcomeUnknownError(
                f"could not {what}: the connection to Redis at {settings.display_url} failed "
                f"after the message was sent ({type(exc).__name__}: {exc}), so it may or "
                "may not be enqueued (a hung server may still add it when it resumes)"
            ) from exc
        lost = [
            i for i, reply in enumerate(replies) if isinstance(reply, redis_errors.NoScriptError)
        ]
        if lost:  # the server lost the scripts (a restart): nothing of those ran
            try:
                await scripts.load_all(client)
            except CONNECTION_ERRORS as exc:
                raise BrokerConnectionError(
                    f"could not {what}: Redis at {settings.display_url} is unreachable ({exc})"
                ) from exc
            again = await send(client, settings, [commands[i] for i in lost], what)
            for i, reply in zip(lost, again, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                if is_auth_error(reply):
                    raise BrokerAuthenticationError(auth_message(settings.display_url, reply))
                raise BrokerError(
                    f"could not {what}: Redis at {settings.display_url} refused it: {reply}"
                    + full_hint(reply)
                    + (" (other parts of it may have been written)" if len(replies) > 1 else "")
                )
        return replies


def full_hint(error: Exception) -> str:
    """What to do when Redis refused a write because it is out of memory ("" otherwise)."""
    if not isinstance(error, redis_errors.OutOfMemoryError) and "OOM" not in str(error):
        return ""
    return (
        "; Redis reached maxmemory and, with maxmemory-policy noeviction, refuses writes: "
        "free memory (a shorter result_ttl, fewer dead letters) or raise maxmemory "
        "(docs/reliability.md: sizing)"
    )
