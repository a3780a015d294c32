"""Commands packed by hiredis are the bytes redis-py's own packer writes, and what hiredis
cannot pack the same way is packed, or refused, by redis-py as before."""

from __future__ import annotations

from typing import Any

import pytest
from redis import exceptions as redis_errors
from redis.asyncio.connection import Connection

from chicory_redis.config import parse_settings
from chicory_redis.connection import create_client

COMMANDS: list[tuple[Any, ...]] = [
    ("PING",),
    ("GET", "chicory:{q:default}:stream"),
    ("MGET", *[f"chicory:result:{i:032x}" for i in range(300)]),
    (b"SET", b"k", 1, 2.5, -7, 10**30, 1e20, 0.1, "é", "ünïcødé ☃"),
    ("XADD", "s", "*", "m", b"\x00\r\n" * 5000),  # over redis-py's buffer cutoff
    ("EVALSHA", "a" * 40, 2, "k1", "k2", 3, *[b"x" * n for n in range(0, 9000, 700)]),
    ("CONFIG GET", "maxmemory"),  # redis-py splits a first argument with spaces
    (b"CLIENT SETNAME", "n"),
    ("SET", "k", memoryview(b"view")),
    ("SET", "k", bytearray(b"array")),  # hiredis refuses it; redis-py packs it
    ("SET", "", ""),
]


def wire(chunks: list[Any]) -> bytes:
    return b"".join(bytes(chunk) for chunk in chunks)


def connection_of(url: str) -> Any:
    pool = create_client(parse_settings(url)).connection_pool
    return pool.connection_class(**pool.connection_kwargs)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "unix:///tmp/redis.sock"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_packed_bytes_are_redis_pys(url: str, command: tuple[Any, ...]) -> None:
    ours, theirs = connection_of(url), Connection()
    assert wire(ours.pack_command(*command)) == wire(theirs.pack_command(*command))
    assert wire(ours.pack_commands([command, command])) == wire(
        theirs.pack_commands([command, command])
    )


@pytest.mark.parametrize("bad", [True, None, 1j, object()])
def test_what_redis_py_refuses_is_refused_with_its_error(bad: object) -> None:
    with pytest.raises(redis_errors.DataError):
        connection_of("redis://127.0.0.1:6379/0").pack_command("SET", "k", bad)


def test_text_redis_py_cannot_encode_is_refused_with_its_error() -> None:
    with pytest.raises(UnicodeEncodeError):
        connection_of("redis://127.0.0.1:6379/0").pack_command("SET", "k", "\udc80")
