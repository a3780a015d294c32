"""Registers ``postgresql://`` and ``postgres://`` with Chicory.

Imports nothing heavy: the factories are ``"module:attr"`` strings, so psycopg is imported
only when a PostgreSQL broker or result backend is actually selected.
"""

from __future__ import annotations

from chicory.plugins import BackendSpec, hookimpl

__all__ = [
    "chicory_register_brokers",
    "chicory_register_commands",
    "chicory_register_result_backends",
]

_SCHEMES = ("postgresql", "postgres")
_HINT = "pip install chicory-postgres"


@hookimpl
def chicory_register_brokers() -> list[BackendSpec]:
    """Offer the PostgreSQL broker."""
    return [
        BackendSpec(
            name="postgres",
            schemes=_SCHEMES,
            factory="chicory_postgres.broker:PostgresBroker.from_url",
            install_hint=_HINT,
            description="PostgreSQL broker (shared, durable; SKIP LOCKED claims, "
            "enqueue inside your transaction)",
            conformance_transactions="chicory_postgres.conformance:psycopg_transaction",
        )
    ]


@hookimpl
def chicory_register_result_backends() -> list[BackendSpec]:
    """Offer the PostgreSQL result backend."""
    return [
        BackendSpec(
            name="postgres",
            schemes=_SCHEMES,
            factory="chicory_postgres.results:PostgresResultBackend.from_url",
            install_hint=_HINT,
            description="PostgreSQL result backend (a table; LISTEN/NOTIFY wake-ups)",
        )
    ]


@hookimpl
def chicory_register_commands(tree: object) -> None:
    """Add ``chicory postgres migrate|status``."""
    from chicory_postgres.commands import register

    register(tree)
