"""The Chicory dashboard: a small web UI over :class:`chicory.admin.Admin`.

Serve it with ``chicory dashboard APP``, or mount :func:`create_dashboard` in your own
Starlette or FastAPI service. Server-rendered pages with htmx (vendored, no build step):
queues, workers, throughput and failure charts, dead letters with filters, replay and
delete, and a task lookup by id. Read-only unless ``allow_actions=True``.
"""

from chicory_dashboard.app import Authorize, Dashboard, create_dashboard

__all__ = ["Authorize", "Dashboard", "create_dashboard"]
