"""The one typed facade over pluggy. Nothing else in Chicory calls ``pm.hook``.

Each :class:`~chicory.Chicory` app owns one :class:`PluginHost` (no global plugin state):
it loads the ``chicory`` entry-point group, collects backend specs, resolves a URL or a name
to a spec, and calls observer hooks one implementation at a time so that one failing
observer cannot silence the others.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import urlsplit

import attrs
import pluggy

from chicory.errors import DuplicateBackendError, UnknownBackendError, UnknownMiddlewareError
from chicory.plugins import hookspecs
from chicory.plugins.specs import BackendKind, BackendSpec, MiddlewareSpec

__all__ = ["OBSERVER_HOOKS", "InstalledBackend", "InstalledMiddleware", "PluginHost"]

log = logging.getLogger("chicory.plugins")

ENTRY_POINT_GROUP: Final = "chicory"

OBSERVER_HOOKS: Final = (
    "chicory_task_received",
    "chicory_task_started",
    "chicory_task_succeeded",
    "chicory_task_retried",
    "chicory_task_failed",
    "chicory_task_dead_lettered",
    "chicory_task_redelivered",
    "chicory_task_lease_lost",
    "chicory_worker_started",
    "chicory_worker_stopping",
)

# Schemes of first-party plugins that may simply not be installed yet.
_KNOWN_HINTS: Final = {
    "redis": "pip install chicory-redis",
    "rediss": "pip install chicory-redis",
    "unix": "pip install chicory-redis",
    "memory": "pip install chicory-memory",
}


@attrs.frozen(kw_only=True)
class InstalledBackend:
    """A backend spec and where it came from.

    Attributes:
        kind: Broker or result backend.
        spec: The registered spec.
        plugin: The plugin's name in the plugin manager.
        distribution: The distribution that installed it, with version, if known.
    """

    kind: BackendKind
    spec: BackendSpec
    plugin: str
    distribution: str | None


@attrs.frozen(kw_only=True)
class InstalledMiddleware:
    """A middleware spec and where it came from.

    Attributes:
        spec: The registered spec.
        plugin: The plugin's name in the plugin manager.
        distribution: The distribution that installed it, with version, if known.
    """

    spec: MiddlewareSpec
    plugin: str
    distribution: str | None


class PluginHost:
    """Owns a pluggy plugin manager for one app.

    Args:
        load_entry_points: Load plugins from the ``chicory`` entry-point group.
        plugins: Extra plugin objects (modules or instances with ``@hookimpl`` methods).
    """

    def __init__(self, *, load_entry_points: bool = True, plugins: Iterable[object] = ()) -> None:
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._dists: dict[str, str] = {}
        self.broken: dict[str, str] = {}
        """Entry points that failed to load, by name, with the error (shown by ``plugins``)."""
        if load_entry_points:
            self._load_entry_points()
        for plugin in plugins:
            self.register(plugin)
        self._catalog: dict[BackendKind, list[InstalledBackend]] | None = None

    def _load_entry_points(self) -> None:
        """Load every ``chicory`` entry point; one broken plugin is logged, not fatal."""
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            if self._pm.get_plugin(entry_point.name) is not None:
                continue
            dist = entry_point.dist
            origin = f"{dist.name} {dist.version}" if dist is not None else None
            try:
                plugin = entry_point.load()
            except Exception as exc:
                self.broken[entry_point.name] = f"{type(exc).__name__}: {exc}"
                log.warning(
                    "chicory plugin %r (%s) failed to load and is ignored: %s",
                    entry_point.name,
                    origin or entry_point.value,
                    exc,
                )
                continue
            self._pm.register(plugin, name=entry_point.name)
            if origin is not None:
                self._dists[entry_point.name] = origin

    def register(self, plugin: object, name: str | None = None) -> None:
        """Register a plugin object (no-op if it is already registered)."""
        if not self._pm.is_registered(plugin):
            self._pm.register(plugin, name=name)
            self._catalog = None

    def installed(self, kind: BackendKind) -> list[InstalledBackend]:
        """Every backend of ``kind`` that plugins registered, checked for clashes.

        Raises:
            DuplicateBackendError: two plugins claim one name or scheme.
        """
        if self._catalog is None:
            self._catalog = {k: self._collect(k) for k in BackendKind}
        return list(self._catalog[kind])

    def resolve(self, kind: BackendKind, target: str) -> tuple[BackendSpec, str]:
        """Find the spec for a URL (by exact scheme) or a plugin name.

        Returns:
            The spec and the URL to build it with (``"<scheme>://"`` when a name was given).

        Raises:
            UnknownBackendError: nothing installed matches; the message lists what is.
        """
        installed = self.installed(kind)
        if "://" in target or target.startswith("unix:"):
            scheme = urlsplit(target).scheme.lower()
            for item in installed:
                if scheme in item.spec.schemes:
                    return item.spec, target
            wanted = f"URL scheme {scheme!r}"
            hint = _KNOWN_HINTS.get(scheme)
        else:
            for item in installed:
                if item.spec.name == target:
                    return item.spec, f"{item.spec.schemes[0]}://" if item.spec.schemes else ""
            wanted = f"name {target!r}"
            hint = _KNOWN_HINTS.get(target)
        listing = ", ".join(
            f"{i.spec.name} ({', '.join(s + '://' for s in i.spec.schemes)})" for i in installed
        )
        raise UnknownBackendError(
            f"no installed {kind.value} plugin handles {wanted}. Installed: {listing or 'none'}. "
            + (
                f"Install it with: {hint}."
                if hint
                else "Install a plugin that provides it "
                "(a distribution registering the 'chicory' entry point), then run "
                "'chicory plugins' to check."
            )
        )

    def middleware(self) -> list[InstalledMiddleware]:
        """Every middleware that plugins offer by name, sorted by name.

        Raises:
            DuplicateBackendError: two plugins offer middleware of one name.
        """
        found: dict[str, InstalledMiddleware] = {}
        for impl in self._pm.hook.chicory_register_middleware.get_hookimpls():
            specs: Any = impl.function()
            for spec in specs or ():
                item = InstalledMiddleware(
                    spec=spec,
                    plugin=impl.plugin_name,
                    distribution=self._dists.get(impl.plugin_name),
                )
                other = found.get(spec.name)
                if other is not None:
                    raise DuplicateBackendError(
                        f"middleware {spec.name!r} is offered twice: by plugin {other.plugin!r} "
                        f"and by plugin {item.plugin!r}; uninstall one of them"
                    )
                found[spec.name] = item
        return sorted(found.values(), key=lambda i: i.spec.name)

    def build_middleware(self, name: str) -> object:
        """Build the middleware a plugin offers as ``name``.

        Raises:
            UnknownMiddlewareError: no installed plugin offers it; the message lists what is.
            ConfigurationError: its factory cannot be imported.
        """
        offered = self.middleware()
        for item in offered:
            if item.spec.name == name:
                return item.spec.load_factory()()
        listing = ", ".join(item.spec.name for item in offered) or "none"
        raise UnknownMiddlewareError(
            f"no installed plugin offers middleware {name!r}. Installed: {listing}. Install "
            f"the plugin that provides it (e.g. pip install chicory-{name}), then run "
            "'chicory plugins' to check."
        )

    def loaded(self) -> list[tuple[str, str | None, str]]:
        """Every plugin loaded from the ``chicory`` entry points, by name: its name, the
        distribution (with version) that installed it, and the first line of its module's
        docstring."""
        found = []
        for name in sorted(self._dists):
            plugin = self._pm.get_plugin(name)
            doc = (getattr(plugin, "__doc__", None) or "").strip().splitlines()
            found.append((name, self._dists.get(name), doc[0] if doc else ""))
        return found

    def add_commands(self, tree: object) -> None:
        """Let every plugin add its commands to the CLI's ``tree`` (``chicory_register_commands``).

        A plugin whose hook raises is logged and skipped: the other commands still work.
        """
        for impl in self._pm.hook.chicory_register_commands.get_hookimpls():
            try:
                impl.function(tree=tree)
            except Exception:
                log.exception("plugin %s could not add its commands; skipped", impl.plugin_name)

    def has_observers(self, hook_name: str) -> bool:
        """Whether any plugin implements the observer hook ``hook_name``."""
        return bool(getattr(self._pm.hook, hook_name).get_hookimpls())

    def notify(self, hook_name: str, event: object) -> None:
        """Call every implementation of observer hook ``hook_name`` with ``event``.

        Each implementation is called on its own; one that raises is logged and skipped.
        """
        for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
            try:
                impl.function(event=event)
            except Exception:
                log.exception("observer %s.%s raised; ignored", impl.plugin_name, hook_name)

    def _collect(self, kind: BackendKind) -> list[InstalledBackend]:
        hook_name = (
            "chicory_register_brokers"
            if kind is BackendKind.BROKER
            else "chicory_register_result_backends"
        )
        found: list[InstalledBackend] = []
        by_name: dict[str, InstalledBackend] = {}
        by_scheme: dict[str, InstalledBackend] = {}
        for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
            specs: Any = impl.function()
            dist_name = self._dists.get(impl.plugin_name)
            for spec in specs or ():
                item = InstalledBackend(
                    kind=kind, spec=spec, plugin=impl.plugin_name, distribution=dist_name
                )
                self._claim(by_name, spec.name, item, "name")
                for scheme in spec.schemes:
                    self._claim(by_scheme, scheme, item, "URL scheme")
                found.append(item)
        return sorted(found, key=lambda i: i.spec.name)

    @staticmethod
    def _claim(
        taken: dict[str, InstalledBackend], key: str, item: InstalledBackend, what: str
    ) -> None:
        other = taken.get(key)
        if other is not None:
            raise DuplicateBackendError(
                f"{item.kind.value} {what} {key!r} is registered twice: by plugin "
                f"{other.plugin!r} ({other.distribution or 'not from a distribution'}) and by "
                f"plugin {item.plugin!r} ({item.distribution or 'not from a distribution'}); "
                "uninstall one of them"
            )
        taken[key] = item
