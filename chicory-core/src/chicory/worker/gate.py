"""The worker's flow gate: checks a task's rate and concurrency limits before a run.

:mod:`chicory.flow` says what the limits mean; this is where a worker applies them. For a
task with limits (and only for one: the job calls the gate when ``task.flow`` is set), right
before the delivery-mode's pre-run step (an at-most-once task's ack), so a task over its
limit is never acked and left unrun:

1. **Concurrency**: take a permit (``acquire_permit``). None free: hand the message back to
   wait :func:`permit_wait` seconds (growing with each wait, counted in the
   ``chicory-permit-waits`` header, up to :data:`MAX_PERMIT_WAIT`).
2. **Rate**: take a turn (``take_turn``). Not this task's turn yet: give the permit back at
   once, and hand the message back until its turn.

"Handing back" is the broker's ``Delivery.retry`` with the same body (so no attempt is
counted and no retry spent) and a ``not_before``: the message waits in the broker's delayed
store, not in a worker slot, and its delivery count starts again at 1 (so ``max_deliveries``
never buries a task for waiting). A broker without ``atomic_retry`` gets ``nack(delay=...)``
instead, which never duplicates an at-most-once task.

A permit is held from the check to the end of the run. The gate renews the permits of
running work every third of their expiry (the broker's lease time, else
:data:`DEFAULT_PERMIT_TTL`), and releases ended ones from its own loop, off the task path:
a killed worker's permits expire like its leases.
"""

from __future__ import annotations

import logging
import random
from collections import defaultdict
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import anyio

from chicory.broker import Delivery
from chicory.envelope import TaskMessage
from chicory.flow import FlowControl, flow_control

if TYPE_CHECKING:
    from chicory.task import Task
    from chicory.worker.worker import Worker

__all__ = [
    "DEFAULT_PERMIT_TTL",
    "MAX_PERMIT_WAIT",
    "WAITS_HEADER",
    "FlowGate",
    "permit_wait",
]

log = logging.getLogger("chicory.worker")

WAITS_HEADER: Final = "chicory-permit-waits"
"""How many times a message waited for a concurrency permit (sets its next wait)."""

DEFAULT_PERMIT_TTL: Final = 30.0
"""Seconds a permit lasts unrenewed on a broker that declares no lease time."""

FIRST_PERMIT_WAIT: Final = 0.25
MAX_PERMIT_WAIT: Final = 5.0


def permit_wait(waits: int) -> float:
    """Seconds a message that found no free permit waits, after ``waits`` earlier waits:
    doubling from :data:`FIRST_PERMIT_WAIT` to :data:`MAX_PERMIT_WAIT`, with ±25% jitter so
    waiting messages do not come back together."""
    base = min(FIRST_PERMIT_WAIT * 2.0 ** min(waits, 16), MAX_PERMIT_WAIT)
    return base * random.uniform(0.75, 1.25)


class FlowGate:
    """Admits runs of limited tasks for one worker, and keeps their permits alive.

    Args:
        worker: The owning worker (its app's broker, its id).
    """

    def __init__(self, worker: Worker) -> None:
        self._app = worker.app
        self._worker_id = worker.worker_id
        self._store: FlowControl | None = None
        lease = worker.app.broker.capabilities.lease_seconds
        self.ttl = lease if lease else DEFAULT_PERMIT_TTL
        self._held: dict[str, set[str]] = defaultdict(set)
        self._ended: list[tuple[str, str]] = []
        self._wake = anyio.Event()

    def _flow(self) -> FlowControl:
        if self._store is None:
            self._store = flow_control(self._app.broker, needed_for="a task's flow limits")
        return self._store

    def holder(self, message: TaskMessage) -> str:
        """The permit holder name of one run: its task id at this worker."""
        return f"{message.id}@{self._worker_id}"

    async def admit(
        self, delivery: Delivery, message: TaskMessage, task: Task[..., object]
    ) -> tuple[float, Mapping[str, str]] | None:
        """Check the limits of ``task`` for one run of ``message``.

        Returns:
            ``None`` when the run may start (holding a permit, if the task has a concurrency
            limit: :meth:`ended` gives it back), else how long the message must wait in the
            broker and the headers it waits with.

        Raises:
            BrokerError: the broker could not be asked; nothing is held.
        """
        flow = task.flow
        assert flow is not None
        store = self._flow()
        if self._ended:
            await self._send_releases()  # this worker's own ended runs first
        holder = None
        if flow.concurrency is not None:
            holder = self.holder(message)
            if not await store.acquire_permit(
                flow.key, holder, limit=flow.concurrency, ttl=self.ttl
            ):
                headers = delivery.headers
                waits = _waits(headers)
                return permit_wait(waits), {**headers, WAITS_HEADER: str(waits + 1)}
            self._held[flow.key].add(holder)
        if flow.rate is not None:
            try:
                rate = flow.rate
                wait = await store.take_turn(
                    flow.key, message.id, limit=rate.count, period=rate.period
                )
            except BaseException:
                if holder is not None:
                    self.ended(flow.key, holder)
                raise
            if wait > 0:
                if holder is not None:
                    self._held[flow.key].discard(holder)
                    await store.release_permit(flow.key, holder)
                return wait, delivery.headers
        return None

    def ended(self, key: str, holder: str) -> None:
        """The run holding ``holder``'s permit of ``key`` ended: release it soon (from the
        gate's loop, or before this worker's next admission)."""
        held = self._held.get(key)
        if held is not None:
            held.discard(holder)
        self._ended.append((key, holder))
        self._wake.set()

    async def run(self) -> None:
        """Release ended permits as they end and renew held ones; runs until cancelled."""
        renew_every = self.ttl / 3
        next_renewal = anyio.current_time() + renew_every
        while True:
            with anyio.move_on_after(max(0.0, next_renewal - anyio.current_time())):
                await self._wake.wait()
            self._wake = anyio.Event()
            try:
                await self._send_releases()
                if anyio.current_time() >= next_renewal:
                    next_renewal = anyio.current_time() + renew_every
                    await self._renew()
            except Exception:
                log.exception("renewing or releasing concurrency permits failed; will retry")

    async def _send_releases(self) -> None:
        ended, self._ended = self._ended, []
        store = self._flow()
        try:
            for key, holder in ended:
                await store.release_permit(key, holder)
        except BaseException:
            self._ended[:0] = ended  # tried again by the loop (a release is idempotent)
            raise

    async def _renew(self) -> None:
        store = self._flow()
        for key, holders in list(self._held.items()):
            if holders:
                await store.renew_permits(key, sorted(holders), ttl=self.ttl)


def _waits(headers: Mapping[str, str]) -> int:
    text = headers.get(WAITS_HEADER, "0")
    return int(text) if text.isdigit() and len(text) < 4 else 0
