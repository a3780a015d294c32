"""One inspection and admin layer for every face: the CLI, the dashboard, users' scripts.

    from chicory.admin import Admin, DeadLetterFilter

    admin = Admin(app)
    for queue in await admin.queues():
        print(queue.name, queue.ready, queue.dead)
    failed = await admin.select(DeadLetterFilter(task="billing.charge"))
    report = await admin.replay(failed)  # each restarts its retry budget

See :mod:`chicory.admin.api` for what each call does and ``docs/operations.md`` for the
commands built on it.
"""

from chicory.admin.api import Admin, Progress
from chicory.admin.cancel import CancelReport, DelayedTask, DelayedTasks
from chicory.admin.models import (
    ActionReport,
    DeadLetterFilter,
    DeadLetterInfo,
    DeadLetterListing,
    DeadLetterRef,
    QueueInfo,
    TaskInfo,
    WorkerStatus,
)

__all__ = [
    "ActionReport",
    "Admin",
    "CancelReport",
    "DeadLetterFilter",
    "DeadLetterInfo",
    "DeadLetterListing",
    "DeadLetterRef",
    "DelayedTask",
    "DelayedTasks",
    "Progress",
    "QueueInfo",
    "TaskInfo",
    "WorkerStatus",
]
