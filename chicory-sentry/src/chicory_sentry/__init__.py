"""Sentry error reporting for Chicory tasks (``pip install chicory-sentry``).

Call ``sentry_sdk.init(...)`` as usual and add ``SentryMiddleware()`` to the app. See
``docs/observability.md``.
"""

from chicory_sentry.middleware import SentryMiddleware

__all__ = ["SentryMiddleware"]
