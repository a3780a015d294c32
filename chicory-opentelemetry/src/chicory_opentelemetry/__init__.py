"""OpenTelemetry tracing for Chicory (``pip install chicory-opentelemetry``).

Enable it on the producers' and the workers' app alike:
``Chicory(middleware=[OpenTelemetryMiddleware()])``. See ``docs/observability.md``.
"""

from chicory_opentelemetry.middleware import OpenTelemetryMiddleware

__all__ = ["OpenTelemetryMiddleware"]
