"""Prometheus metrics for Chicory workers (``pip install chicory-prometheus``).

Enable it with ``Chicory(middleware=[PrometheusMiddleware()])`` or ``chicory worker
--middleware prometheus``; the worker serves ``/metrics`` on port 9191 (see
``docs/observability.md`` for every metric and the multi-process setup).

The names below are imported on first use: Chicory loads this package's plugin module in
every app, and that must not import prometheus_client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chicory_prometheus.depth import QueueDepthCollector
    from chicory_prometheus.metrics import Metrics
    from chicory_prometheus.middleware import DEFAULT_PORT, PrometheusMiddleware

__all__ = ["DEFAULT_PORT", "Metrics", "PrometheusMiddleware", "QueueDepthCollector"]

_WHERE = {
    "DEFAULT_PORT": "chicory_prometheus.middleware",
    "PrometheusMiddleware": "chicory_prometheus.middleware",
    "Metrics": "chicory_prometheus.metrics",
    "QueueDepthCollector": "chicory_prometheus.depth",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'chicory_prometheus' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_WHERE[name]), name)
