"""Offers the ``sentry`` middleware to Chicory. Imports nothing heavy: the factory is lazy."""

from __future__ import annotations

from chicory.plugins import MiddlewareSpec, hookimpl


@hookimpl
def chicory_register_middleware() -> list[MiddlewareSpec]:
    """Offer :class:`~chicory_sentry.SentryMiddleware` with its defaults (report failures,
    not retries), for an app that calls ``sentry_sdk.init``."""
    return [
        MiddlewareSpec(
            name="sentry",
            factory="chicory_sentry.middleware:SentryMiddleware",
            install_hint="pip install chicory-sentry",
            description="Sentry events for failed tasks, with each task's context",
        )
    ]
