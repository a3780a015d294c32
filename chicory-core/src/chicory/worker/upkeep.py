"""The worker's periodic upkeep, beside the task path: lease renewal and heartbeat records.

Two loops of :class:`~chicory.worker.worker.Worker`'s background task group:

* the **lease loop** renews the leases of every delivery the worker holds and must not see
  redelivered elsewhere while it lives: running at-least-once work, prefetched work of both
  modes waiting for a runner, and work whose settle failed and is being sent again. It runs
  every ``lease_renew_interval`` seconds (default: a third of the lease time the broker
  declares), and not at all on a broker without lease renewal;
* the **heartbeat loop** writes a :class:`~chicory.records.WorkerInfo` record to the result
  backend every ``heartbeat_interval`` seconds, kept three intervals, so ``chicory workers``
  and the dashboard see the worker and its counters.

A failed renewal or heartbeat is logged and tried again at the next turn; neither loop ever
stops the worker.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime
from typing import TYPE_CHECKING

import anyio

from chicory.broker import Consumer
from chicory.clock import utcnow
from chicory.records import WorkerInfo, encode_record
from chicory.worker.startup import GUESSED_RENEW_INTERVAL

if TYPE_CHECKING:
    from chicory.app import Chicory
    from chicory.worker.inbox import Inbox
    from chicory.worker.job import JobRunner
    from chicory.worker.settler import Settler

__all__ = ["WorkerUpkeep"]

log = logging.getLogger("chicory.worker")


class WorkerUpkeep:
    """The lease and heartbeat loops of :class:`~chicory.worker.worker.Worker`."""

    app: Chicory
    queues: tuple[str, ...]
    concurrency: int
    lease_renew_interval: float | None
    heartbeat_interval: float
    worker_id: str
    _jobs: JobRunner
    _inbox: Inbox
    _settler: Settler | None
    _started_at: datetime

    async def _lease_loop(self, consumer: Consumer) -> None:
        """Renew the leases of the deliveries this worker holds, every renewal interval."""
        broker = self.app.broker
        capabilities = broker.capabilities
        interval = self.lease_renew_interval
        if interval is None:
            lease = capabilities.lease_seconds
            interval = lease / 3 if lease else GUESSED_RENEW_INTERVAL
        if not capabilities.lease_renewal or interval <= 0:
            return
        while True:
            await anyio.sleep(interval)
            # Running at-least-once work, prefetched work of both modes (a delivery waiting for
            # a free runner must not be redelivered elsewhere while this worker lives), and
            # work whose settle failed and is being sent again.
            leased = self._jobs.leased() + self._inbox.waiting()
            if self._settler is not None:
                leased += self._settler.unsettled()
            if not leased:
                continue
            try:
                await consumer.extend_leases(leased)
            except Exception:
                log.exception("renewing %d leases failed; will try again", len(leased))

    async def _heartbeat_loop(self) -> None:
        """Write this worker's heartbeat record, every ``heartbeat_interval`` seconds."""
        if self.heartbeat_interval <= 0:
            return
        backend = self.app.backend
        while True:
            info = WorkerInfo(
                worker_id=self.worker_id,
                hostname=socket.gethostname(),
                pid=os.getpid(),
                queues=list(self.queues),
                concurrency=self.concurrency,
                started_at=self._started_at,
                seen_at=utcnow(),
                processed=self._jobs.processed,
                running=self._jobs.running,
                failed=self._jobs.failed,
                retried=self._jobs.retried,
                heartbeat_interval=self.heartbeat_interval,
            )
            try:
                await backend.heartbeat(
                    self.worker_id, encode_record(info), ttl=self.heartbeat_interval * 3
                )
            except Exception:
                log.exception("writing the worker heartbeat failed; will try again")
            await anyio.sleep(self.heartbeat_interval)
