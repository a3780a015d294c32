"""Sentry error reporting for Chicory tasks (``pip install chicory-sentry``).

Call ``sentry_sdk.init(...)`` as usual and add ``SentryMiddleware()`` to the app. See
``docs/observability.md``.

The name below is imported on first use: Chicory loads this package's plugin module in every
app, and that must not import the Sentry SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from chicory_sentry.middleware import SentryMiddleware

__all__ = ["SentryMiddleware"]


def __getattr__(name: str) -> Any:
    if name != "SentryMiddleware":
        raise AttributeError(f"module 'chicory_sentry' has no attribute {name!r}")
    from chicory_sentry.middleware import SentryMiddleware

    return SentryMiddleware
