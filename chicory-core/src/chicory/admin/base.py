"""What every part of the admin API stands on: the app, who acts, and the broker's inspection.

:class:`AdminBase` is the part of :class:`~chicory.admin.Admin` the others use: the app, the
actor recorded in replays' history, the scan limit of filtered listings, the inspection of
the broker (:mod:`chicory.inspection`, or :mod:`chicory.admin.fallback` on a broker without
that capability) and the names of every queue known.
"""

from __future__ import annotations

import getpass
import logging
import socket

from chicory.admin.fallback import CoreOnlyInspector
from chicory.app import Chicory
from chicory.errors import ConfigurationError, ResultBackendError
from chicory.inspection import InspectableBroker, Inspection
from chicory.records import WorkerInfo, decode_record

__all__ = ["AdminBase"]

log = logging.getLogger("chicory.admin")


def _actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class AdminBase:
    """The app, the actor and the broker's inspection (see :class:`~chicory.admin.Admin`,
    whose arguments these are)."""

    def __init__(self, app: Chicory, *, actor: str | None = None, scan_limit: int = 5000):
        if scan_limit < 1:
            raise ConfigurationError(f"scan_limit must be at least 1, got {scan_limit}")
        self.app = app
        self.actor = actor or _actor()
        self.scan_limit = scan_limit

    def __repr__(self) -> str:
        return f"<Admin of {self.app!r}>"

    async def _inspection(self) -> Inspection:
        broker = await self.app.connected_broker()
        if broker.capabilities.inspection and isinstance(broker, InspectableBroker):
            return broker
        return CoreOnlyInspector(broker)

    async def _worker_records(self) -> list[WorkerInfo]:
        backend = await self.app.connected_backend()
        found = []
        for worker_id, data in (await backend.workers()).items():
            try:
                found.append(decode_record(data, WorkerInfo))
            except ResultBackendError as exc:
                log.warning("skipping the unreadable heartbeat of worker %s: %s", worker_id, exc)
        return found

    async def queue_names(self) -> list[str]:
        """Every queue known: the broker's, the app's (its default queue and every task's),
        and those live workers consume. Sorted."""
        names = set(await (await self._inspection()).queues())
        names.add(self.app.default_queue)
        names.update(task.queue for task in self.app.tasks.values())
        for info in await self._worker_records():
            names.update(info.queues)
        return sorted(names)
