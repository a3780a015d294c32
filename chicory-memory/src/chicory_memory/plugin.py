"""Registers ``memory://`` with Chicory. Imports nothing heavy: factories are lazy."""

from __future__ import annotations

from chicory.plugins import BackendSpec, hookimpl


@hookimpl
def chicory_register_brokers() -> list[BackendSpec]:
    """Offer the in-process reference broker."""
    return [
        BackendSpec(
            name="memory",
            schemes=("memory",),
            factory="chicory_memory.broker:MemoryBroker.from_url",
            install_hint="pip install chicory-memory",
            description="in-process reference broker (not shared between processes)",
        )
    ]


@hookimpl
def chicory_register_result_backends() -> list[BackendSpec]:
    """Offer the in-process result backend."""
    return [
        BackendSpec(
            name="memory",
            schemes=("memory",),
            factory="chicory_memory.results:MemoryResultBackend.from_url",
            install_hint="pip install chicory-memory",
            description="in-process result backend (not shared between processes)",
        )
    ]
