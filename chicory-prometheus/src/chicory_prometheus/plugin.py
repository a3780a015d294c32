"""Offers the ``prometheus`` middleware to Chicory. Imports nothing heavy: the factory is lazy."""

from __future__ import annotations

from chicory.plugins import MiddlewareSpec, hookimpl


@hookimpl
def chicory_register_middleware() -> list[MiddlewareSpec]:
    """Offer :class:`~chicory_prometheus.PrometheusMiddleware`, configured from the
    environment (``CHICORY_PROMETHEUS_PORT``, ``CHICORY_PROMETHEUS_ADDR``)."""
    return [
        MiddlewareSpec(
            name="prometheus",
            factory="chicory_prometheus.middleware:PrometheusMiddleware.from_env",
            install_hint="pip install chicory-prometheus",
            description="Prometheus metrics of tasks and queues, served by each worker",
        )
    ]
