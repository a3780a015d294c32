"""OpenTelemetry tracing for Chicory (``pip install chicory-opentelemetry``).

Enable it on the producers' and the workers' app alike:
``Chicory(middleware=[OpenTelemetryMiddleware()])``. See ``docs/observability.md``.

The name below is imported on first use: Chicory loads this package's plugin module in every
app, and that must not import OpenTelemetry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chicory_opentelemetry.middleware import OpenTelemetryMiddleware

__all__ = ["OpenTelemetryMiddleware"]


def __getattr__(name: str) -> Any:
    if name != "OpenTelemetryMiddleware":
        raise AttributeError(f"module 'chicory_opentelemetry' has no attribute {name!r}")
    from chicory_opentelemetry.middleware import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware
