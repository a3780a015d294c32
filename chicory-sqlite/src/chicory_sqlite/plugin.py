"""Registers ``sqlite://`` with Chicory (the ``chicory`` entry point points here).

Registration is cheap and pure: this module imports only :mod:`chicory.plugins`; the broker
and result backend modules (and :mod:`sqlite3`) are imported only when ``sqlite://`` is
selected.
"""

from __future__ import annotations

from chicory.plugins import BackendSpec, hookimpl

INSTALL_HINT = "pip install chicory-sqlite"


@hookimpl
def chicory_register_brokers() -> list[BackendSpec]:
    """Offer the SQLite broker under the name ``sqlite`` and scheme ``sqlite://``."""
    return [
        BackendSpec(
            name="sqlite",
            schemes=("sqlite",),
            factory="chicory_sqlite.broker:SqliteBroker.from_url",
            install_hint=INSTALL_HINT,
            description="durable broker on a SQLite file (worker processes on one machine)",
        )
    ]


@hookimpl
def chicory_register_result_backends() -> list[BackendSpec]:
    """Offer the SQLite result backend under the name ``sqlite`` and scheme ``sqlite://``."""
    return [
        BackendSpec(
            name="sqlite",
            schemes=("sqlite",),
            factory="chicory_sqlite.results:SqliteResultBackend.from_url",
            install_hint=INSTALL_HINT,
            description="results in a SQLite file (processes on one machine)",
        )
    ]
