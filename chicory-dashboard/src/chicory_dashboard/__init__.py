"""The Chicory dashboard: a small web UI over :class:`chicory.admin.Admin`.

Serve it with ``chicory dashboard APP``, or mount :func:`create_dashboard` in your own
Starlette or FastAPI service. Server-rendered pages with htmx (vendored, no build step):
queues, workers, throughput and failure charts, dead letters with filters, replay and
delete, delayed tasks with removal, periodic schedules with their last and next fire and
firing by hand, and a task lookup by id with live progress and cancelling. Read-only
unless ``allow_actions=True``.
"""

from chicory_dashboard.app import ACTIONS, Authorize, Dashboard, create_dashboard

__all__ = ["ACTIONS", "Authorize", "Dashboard", "create_dashboard"]
