"""Registers ``example://`` with Chicory (the ``chicory`` entry point points here).

Registration is cheap and pure: this module imports only :mod:`chicory.plugins`; the broker
module (and :mod:`sqlite3`) is imported only when someone selects ``example://``.
"""

from __future__ import annotations

from chicory.plugins import BackendSpec, hookimpl


@hookimpl
def chicory_register_brokers() -> list[BackendSpec]:
    """Offer the SQLite example broker under the name ``example`` and scheme ``example://``."""
    return [
        BackendSpec(
            name="example",
            schemes=("example",),
            factory="chicory_example_plugin.broker:ExampleBroker.from_url",
            install_hint="pip install chicory-example-plugin",
            description="SQLite broker from the plugin guide (file or in-memory)",
        )
    ]
