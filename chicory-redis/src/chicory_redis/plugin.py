"""Registers ``redis://``, ``rediss://`` and ``unix://`` with Chicory.

Imports nothing heavy: the factories are ``"module:attr"`` strings, so ``redis`` is imported
only when a Redis broker or result backend is actually selected.
"""

from __future__ import annotations

from chicory.plugins import BackendSpec, hookimpl

__all__ = ["chicory_register_brokers", "chicory_register_result_backends"]

_SCHEMES = ("redis", "rediss", "unix")
_HINT = "pip install chicory-redis"


@hookimpl
def chicory_register_brokers() -> list[BackendSpec]:
    """Offer the Redis Streams broker."""
    return [
        BackendSpec(
            name="redis",
            schemes=_SCHEMES,
            factory="chicory_redis.broker:RedisBroker.from_url",
            install_hint=_HINT,
            description="Redis Streams broker (shared, persistent; scale out with more workers)",
        )
    ]


@hookimpl
def chicory_register_result_backends() -> list[BackendSpec]:
    """Offer the Redis result backend."""
    return [
        BackendSpec(
            name="redis",
            schemes=_SCHEMES,
            factory="chicory_redis.results:RedisResultBackend.from_url",
            install_hint=_HINT,
            description="Redis result backend (TTL on every record, pub/sub wake-ups)",
        )
    ]
