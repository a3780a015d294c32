"""Prometheus metrics for Chicory workers (``pip install chicory-prometheus``).

Enable it with ``Chicory(middleware=[PrometheusMiddleware()])`` or ``chicory worker
--middleware prometheus``; the worker serves ``/metrics`` on port 9191 (see
``docs/observability.md`` for every metric and the multi-process setup).
"""

from chicory_prometheus.depth import QueueDepthCollector
from chicory_prometheus.metrics import Metrics
from chicory_prometheus.middleware import DEFAULT_PORT, PrometheusMiddleware

__all__ = ["DEFAULT_PORT", "Metrics", "PrometheusMiddleware", "QueueDepthCollector"]
