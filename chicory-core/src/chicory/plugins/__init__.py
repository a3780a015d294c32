"""Chicory's plugin system: pluggy hook specs, backend specs and the typed facade.

Plugin authors need :data:`hookimpl`, :class:`BackendSpec` and :class:`MiddlewareSpec`; see
``docs/plugins.md``.
"""

from chicory.plugins.events import TaskEvent, WorkerEvent
from chicory.plugins.hookspecs import hookimpl, hookspec
from chicory.plugins.host import PluginHost
from chicory.plugins.specs import BackendKind, BackendSpec, MiddlewareSpec

__all__ = [
    "BackendKind",
    "BackendSpec",
    "MiddlewareSpec",
    "PluginHost",
    "TaskEvent",
    "WorkerEvent",
    "hookimpl",
    "hookspec",
]
