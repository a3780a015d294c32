"""How scripts are run: ``EVALSHA``, reloading a script the server lost, pipelined batches.

If the server lost a script (restart, ``SCRIPT FLUSH``) it is loaded again and the call
repeated, which is safe because a ``NOSCRIPT`` reply means nothing ran.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Final, TypeVar

import attrs
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.exceptions import NoScriptError, RedisError

from chicory_redis.config import RedisSettings
from chicory_redis.connection import CONNECTION_ERRORS, create_client, is_auth_error
from chicory_redis.scripts.base import Script

__all__ = [
    "CHUNK",
    "CHUNK_BYTES",
    "Arg",
    "Call",
    "chunked",
    "load_scripts",
    "open_client",
    "run",
    "run_many",
]

Arg = str | bytes | int | float


@attrs.frozen
class Call:
    """One script invocation for :func:`run_many`."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Arg]

    def command(self) -> tuple[Arg, ...]:
        """The ``EVALSHA`` command of this call."""
        return ("EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args)


CHUNK: Final = 500
"""Most items (messages, results) one batch script call takes."""

CHUNK_BYTES: Final = 1 << 20
"""A batch script call takes items until they reach about this many bytes: a script blocks
Redis while it runs, so large items go a few per call."""

_T = TypeVar("_T")


def chunked(items: Sequence[_T], size: Callable[[_T], int]) -> list[list[_T]]:
    """Split ``items`` into batch script calls of at most :data:`CHUNK` items, starting a
    new one once a chunk's ``size`` reaches :data:`CHUNK_BYTES`."""
    chunks: list[list[_T]] = []
    chunk: list[_T] = []
    total = 0
    for item in items:
        if chunk and (len(chunk) >= CHUNK or total >= CHUNK_BYTES):
            chunks.append(chunk)
            chunk, total = [], 0
        chunk.append(item)
        total += size(item)
    if chunk:
        chunks.append(chunk)
    return chunks


async def load_scripts(client: Redis, scripts: Sequence[Script]) -> None:
    """Load ``scripts`` into the server's script cache (one round trip)."""
    pipe = client.pipeline(transaction=False)
    for script in scripts:
        pipe.script_load(script.source)
    await pipe.execute()


async def open_client(
    settings: RedisSettings,
    needed: Sequence[Script],
    errors: Callable[[str, str], AbstractContextManager[None]],
) -> Redis:
    """Return a new client that answered ``PING`` and has ``needed`` loaded.

    The client is closed again if either step fails; ``errors`` (``broker_errors`` or
    ``results_errors``) turns the failure into the caller's error type.
    """
    client = create_client(settings)
    try:
        with errors(settings.display_url, "connect"):
            await client.ping()
            await load_scripts(client, needed)
    except BaseException:
        await client.aclose(close_connection_pool=True)
        raise
    return client


async def run(client: Redis, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    """Run ``script`` with ``EVALSHA``, loading it first if the server lost it.

    A connection error (not a timeout, not a refused login) is met by running the script
    once more, on another connection: a pooled connection can die between the pool's check
    and the command, and every script run here is safe to repeat. (``enqueue`` and a
    dead-letter copy are not, and go through :mod:`chicory_redis.sending` instead.)
    """
    try:
        return await _run(client, script, keys, args)
    except redis_errors.ConnectionError as exc:
        if is_auth_error(exc):
            raise
        return await _run(client, script, keys, args)


async def _run(client: Redis, script: Script, keys: Sequence[str], args: Sequence[Arg]) -> Any:
    try:
        return await client.evalsha(script.sha, len(keys), *keys, *args)
    except NoScriptError:
        await client.script_load(script.source)
        return await client.evalsha(script.sha, len(keys), *keys, *args)


async def run_many(client: Redis, calls: Sequence[Call]) -> list[Any]:
    """Run several script calls in one pipelined round trip (not a transaction).

    Each call is atomic on its own. Calls the server could not run for lack of the script
    are repeated once it is loaded; a connection error repeats them all once, as
    :func:`run` does.

    Returns:
        One result per call, in order; a call that failed has its exception as its result.
    """
    if not calls:
        return []
    if len(calls) == 1:  # one command: no pipeline object to build
        call = calls[0]
        try:
            return [await run(client, call.script, call.keys, call.args)]
        except CONNECTION_ERRORS:
            raise
        except RedisError as exc:
            return [exc]
    try:
        results = await _pipeline(client, calls)
    except redis_errors.ConnectionError as exc:
        if is_auth_error(exc):
            raise
        results = await _pipeline(client, calls)
    missing = [i for i, result in enumerate(results) if isinstance(result, NoScriptError)]
    if missing:
        lost = {calls[i].script.sha: calls[i].script for i in missing}
        await load_scripts(client, list(lost.values()))
        retried = await _pipeline(client, [calls[i] for i in missing])
        for index, result in zip(missing, retried, strict=True):
            results[index] = result
    return results


async def _pipeline(client: Redis, calls: Sequence[Call]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for call in calls:
        pipe.evalsha(call.script.sha, len(call.keys), *call.keys, *call.args)
    return list(await pipe.execute(raise_on_error=False))
