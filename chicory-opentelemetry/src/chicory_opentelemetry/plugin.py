"""Offers the ``opentelemetry`` middleware to Chicory. Imports nothing heavy: the factory is
lazy."""

from __future__ import annotations

from chicory.plugins import MiddlewareSpec, hookimpl


@hookimpl
def chicory_register_middleware() -> list[MiddlewareSpec]:
    """Offer :class:`~chicory_opentelemetry.OpenTelemetryMiddleware` on the global tracer
    provider and propagator."""
    return [
        MiddlewareSpec(
            name="opentelemetry",
            factory="chicory_opentelemetry.middleware:OpenTelemetryMiddleware",
            install_hint="pip install chicory-opentelemetry",
            description="OpenTelemetry spans for publishing and running tasks, joined "
            "across processes",
        )
    ]
