"""Harnesses built from a broker URL or plugin name, for ``chicory conformance``.

The runner's generated ``conftest.py`` calls these. A broker factory receives the harness
knobs as keyword options: ``factory(url, lease_seconds=..., max_deliveries=...)``, and for a
broker that declares dead-letter limits also ``dead_letter_max_count=...`` and
``dead_letter_max_age=...``. A broker declaring ``transactional_enqueue`` gets its
transactions from its spec's ``conformance_transactions``. Every queue of one run starts
with the run's own prefix, and each test deletes its queues when the broker declares
``delete_queue`` (see :func:`cleanup_note`).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from chicory.plugins import BackendKind, BackendSpec, PluginHost
from chicory.redact import redact_url
from chicory.testing.harness import DEFAULT_LEASE_SECONDS, BrokerHarness, ResultBackendHarness

__all__ = [
    "broker_harness_for",
    "broker_spec",
    "cleanup_note",
    "result_backend_harness_for",
    "result_backend_spec",
]


def broker_spec(target: str) -> tuple[BackendSpec, str]:
    """The broker spec ``target`` selects, and the URL to build it with.

    Raises:
        UnknownBackendError: no installed plugin handles ``target``.
    """
    return PluginHost().resolve(BackendKind.BROKER, target)


def broker_harness_for(target: str, *, queue_prefix: str = "chicory-conformance") -> BrokerHarness:
    """A harness building brokers of the plugin that ``target`` (URL or name) selects.

    Args:
        target: A broker URL or an installed plugin name.
        queue_prefix: First part of every queue name the tests use.

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

    return BrokerHarness(
        factory=build,
        dead_letter_limits=limited,
        name=f"{spec.name} ({redact_url(url)})",
        queue_prefix=queue_prefix,
        transactions=spec.load_conformance_transactions(),
    )


def result_backend_spec(target: str) -> tuple[BackendSpec, str] | None:
    """The result backend offered under the same name as ``target``'s broker, and its URL."""
    spec, url = broker_spec(target)
    for item in PluginHost().installed(BackendKind.RESULT_BACKEND):
        if item.spec.name == spec.name:
            return item.spec, (url if "://" in url else f"{item.spec.schemes[0]}://")
    return None


def result_backend_harness_for(target: str) -> ResultBackendHarness:
    """A harness for the result backend offered under the same name as ``target``'s broker.

    Raises:
        LookupError: that plugin offers no result backend (the runner does not ask then).
    """
    found = result_backend_spec(target)
    if found is None:
        raise LookupError(f"the plugin selected by {target!r} offers no result backend")
    spec, url = found
    return ResultBackendHarness(
        factory=partial(spec.load_factory(), url), name=f"{spec.name} ({redact_url(url)})"
    )


def cleanup_note(target: str, queue_prefix: str, *, results: bool) -> str:
    """Say what a run against ``target`` left behind, and where.

    Args:
        target: The broker URL or plugin name the run used.
        queue_prefix: The run's queue prefix.
        results: Whether the result backend suite ran.
    """
    harness = broker_harness_for(target, queue_prefix=queue_prefix)
    broker = harness.factory(lease_seconds=DEFAULT_LEASE_SECONDS, max_deliveries=None)
    capabilities = broker.capabilities
    if capabilities.delete_queue:
        text = (
            f"Cleaned up: each test deleted its queues (named {queue_prefix}-*) with the "
            "broker's delete_queue."
        )
    elif not capabilities.shared:
        text = "Nothing left behind: the broker is in-process, and its queues end with this run."
    else:
        text = (
            f"Left data: the broker declares no 'delete_queue' capability, so the queues this "
            f"run created are still on {harness.name}: every name starts with "
            f"{queue_prefix}-. Delete them with the broker's own tools."
        )
    if results:
        text += (
            " Result records and heartbeats of the result backend suite expire on their own "
            "(60 s at most)."
        )
    return text
