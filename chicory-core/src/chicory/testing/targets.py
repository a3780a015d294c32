"""Harnesses built from a broker URL or plugin name, for ``chicory conformance``.

The runner's generated ``conftest.py`` calls these. A broker factory receives the harness
knobs as keyword options: ``factory(url, lease_seconds=..., max_deliveries=...)``, and for a
broker that declares dead-letter limits also ``dead_letter_max_count=...`` and
``dead_letter_max_age=...``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest

from chicory.plugins import BackendKind, BackendSpec, PluginHost
from chicory.testing.harness import DEFAULT_LEASE_SECONDS, BrokerHarness, ResultBackendHarness

__all__ = ["broker_harness_for", "broker_spec", "result_backend_harness_for"]


def broker_spec(target: str) -> tuple[BackendSpec, str]:
    """The broker spec ``target`` selects, and the URL to build it with.

    Raises:
        UnknownBackendError: no installed plugin handles ``target``.
    """
    return PluginHost().resolve(BackendKind.BROKER, target)


def broker_harness_for(target: str) -> BrokerHarness:
    """A harness building brokers of the plugin that ``target`` (URL or name) selects.

    Raises:
        UnknownBackendError: no installed plugin handles ``target``.
    """
    spec, url = broker_spec(target)
    factory = spec.load_factory()

    def build(*, lease_seconds: float, max_deliveries: int | None) -> Any:
        return factory(url, lease_seconds=lease_seconds, max_deliveries=max_deliveries)

    def limited(*, max_count: int, max_age: float) -> Any:
        return factory(
            url,
            lease_seconds=DEFAULT_LEASE_SECONDS,
            max_deliveries=None,
            dead_letter_max_count=max_count,
            dead_letter_max_age=max_age,
        )

    return BrokerHarness(factory=build, dead_letter_limits=limited, name=f"{spec.name} ({url})")


def result_backend_harness_for(target: str) -> ResultBackendHarness:
    """A harness for the result backend offered under the same name as ``target``'s broker.

    Skips the calling test (with the reason) when that plugin offers no result backend.
    """
    spec, url = broker_spec(target)
    for item in PluginHost().installed(BackendKind.RESULT_BACKEND):
        if item.spec.name == spec.name:
            factory = item.spec.load_factory()
            backend_url = url if "://" in url else f"{item.spec.schemes[0]}://"
            return ResultBackendHarness(
                factory=partial(factory, backend_url), name=f"{spec.name} ({backend_url})"
            )
    pytest.skip(f"plugin {spec.name!r} offers no result backend; nothing to test")
