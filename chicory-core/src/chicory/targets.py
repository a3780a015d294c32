"""Which broker and result backend an app gets: from its arguments, the environment, or the
defaults.

A target is a URL (its scheme picks the plugin), a plugin name, or an instance. With none,
the broker is ``$CHICORY_BROKER_URL``, else ``memory://``; the result backend is
``$CHICORY_BACKEND_URL``, else the broker's URL when the plugin of that scheme also offers a
result backend, else ``memory://``.
"""

from __future__ import annotations

import os
from typing import Any, Final

from chicory.backend import ResultBackend
from chicory.broker import Broker
from chicory.plugins import BackendKind, PluginHost
from chicory.redact import redact_url

__all__ = ["BACKEND_ENV", "BROKER_ENV", "DEFAULT_URL", "build_backend", "build_broker", "describe"]

BROKER_ENV: Final = "CHICORY_BROKER_URL"
BACKEND_ENV: Final = "CHICORY_BACKEND_URL"
DEFAULT_URL: Final = "memory://"


def build_broker(
    plugins: PluginHost, target: str | Broker | None, options: dict[str, Any]
) -> tuple[Broker, str | None]:
    """The broker of ``target`` (see the module docstring).

    Returns:
        The broker, and the URL or name it was built from (``None`` for an instance).

    Raises:
        UnknownBackendError: no installed plugin offers a broker of that scheme or name.
    """
    if target is None:
        target = os.environ.get(BROKER_ENV) or DEFAULT_URL
    if not isinstance(target, str):
        return target, None
    spec, url = plugins.resolve(BackendKind.BROKER, target)
    broker: Broker = spec.load_factory()(url, **options)
    return broker, target


def build_backend(
    plugins: PluginHost,
    target: str | ResultBackend | None,
    broker_target: str | None,
    options: dict[str, Any],
) -> tuple[ResultBackend, str | None]:
    """The result backend of ``target``; ``broker_target``: the broker's URL, if it has one
    (see the module docstring).

    Returns:
        The result backend, and the URL or name it was built from (``None`` for an
        instance).

    Raises:
        UnknownBackendError: no installed plugin offers a result backend of that scheme or
            name.
    """
    if target is None:
        target = os.environ.get(BACKEND_ENV) or _default_backend_url(plugins, broker_target)
    if not isinstance(target, str):
        return target, None
    spec, url = plugins.resolve(BackendKind.RESULT_BACKEND, target)
    backend: ResultBackend = spec.load_factory()(url, **options)
    return backend, target


def _default_backend_url(plugins: PluginHost, broker_url: str | None) -> str:
    if broker_url and "://" in broker_url:
        scheme = broker_url.split("://", 1)[0].lower()
        offered = plugins.installed(BackendKind.RESULT_BACKEND)
        if any(scheme in item.spec.schemes for item in offered):
            return broker_url
    return DEFAULT_URL


def describe(instance: object, target: str | None) -> str:
    """A broker or result backend for humans: its redacted URL, else its repr."""
    if target and "://" in target:
        return redact_url(target)
    return repr(instance)
