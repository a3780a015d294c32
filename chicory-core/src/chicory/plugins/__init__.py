"""Chicory's plugin system: pluggy hook specs, backend specs and the typed facade.

Plugin authors need :data:`hookimpl` and :class:`BackendSpec`; see ``docs/plugins.md``.
"""

from chicory.plugins.events import TaskEvent, WorkerEvent
from chicory.plugins.hookspecs import hookimpl, hookspec
from chicory.plugins.host import PluginHost
from chicory.plugins.specs import BackendKind, BackendSpec

__all__ = [
    "BackendKind",
    "BackendSpec",
    "PluginHost",
    "TaskEvent",
    "WorkerEvent",
    "hookimpl",
    "hookspec",
]
