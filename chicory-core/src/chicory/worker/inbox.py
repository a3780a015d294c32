"""The hand-over between a worker's fetch loop and its runners.

A deque of deliveries and a deque of idle runners, each waiting on its own event. Idle
runners are woken one at a time, as a chain: a batch wakes one runner; a runner that takes
a delivery and sees more waiting wakes the next idle one, unless a wake-up is already on its
way. So a batch of quick tasks is run by the one or two runners that are awake, with no
wake-up per task, while a batch of slow tasks (whose runners suspend) still fans out to every
idle runner within as many event-loop turns. A shared event would wake every idle runner for
every delivery; waking one runner per delivery would wake runners that find nothing left.

The inbox needs no bound of its own: the fetch loop never holds more than the worker's
capacity.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

import anyio

from chicory.broker import Delivery

__all__ = ["Inbox"]


class Inbox:
    """Fetched deliveries waiting for a runner."""

    def __init__(self) -> None:
        self._items: deque[Delivery] = deque()
        self._idle: deque[anyio.Event] = deque()
        self._waking = 0  # runners woken that have not resumed yet
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def handing_out(self) -> bool:
        """Whether deliveries wait and a runner is being woken to take one.

        While this holds, more runners will start work within event-loop turns; the settler
        waits for them so their pre-run acks join one batch.
        """
        return bool(self._items) and self._waking > 0

    def quiet(self) -> bool:
        """Whether no delivery waits for a runner and some runner is idle to take the next.

        Then nothing else is about to start, and the next delivery will not wait for a
        runner: a runner may spend a round trip settling its own task (see
        :class:`chicory.worker.settler.Settler`).
        """
        return not self._items and bool(self._idle)

    def waiting(self) -> list[Delivery]:
        """The deliveries no runner has taken yet (their leases need renewal too)."""
        return list(self._items)

    def put_many(self, deliveries: Iterable[Delivery]) -> None:
        """Add deliveries; wake an idle runner unless one is being woken already."""
        self._items.extend(deliveries)
        self._wake_one()

    def fan_out(self) -> None:
        """Wake an idle runner for every waiting delivery at once, not one per loop turn.

        For a runner about to suspend on work the others will join (a pre-run ack): they
        all start in the same loop turn, and their acks go out in one batch.
        """
        while len(self._items) > self._waking and self._idle:
            self._waking += 1
            self._idle.popleft().set()

    def close(self) -> None:
        """No more deliveries will come; runners drain what is left, then stop."""
        self._closed = True
        while self._idle:
            self._waking += 1
            self._idle.popleft().set()

    def _wake_one(self) -> None:
        if self._items and self._idle and not self._waking:
            self._waking += 1
            self._idle.popleft().set()

    def get_nowait(self) -> Delivery | None:
        """Return the next delivery if one is waiting, else ``None`` (then await :meth:`get`).

        A runner under load takes its next delivery this way: no coroutine per delivery.
        """
        items = self._items
        if not items:
            return None
        delivery = items.popleft()
        if items:
            self._wake_one()
        return delivery

    async def get(self) -> Delivery | None:
        """Return the next delivery, waiting for one; ``None`` once closed and empty."""
        while True:
            delivery = self.get_nowait()
            if delivery is not None:
                return delivery
            if self._closed:
                return None
            wake = anyio.Event()
            self._idle.append(wake)
            try:
                await wake.wait()
            except BaseException:
                if wake in self._idle:
                    self._idle.remove(wake)
                else:  # woken but cancelled: pass the wake-up on
                    self._waking -= 1
                    self._wake_one()
                raise
            self._waking -= 1
