"""The hand-over between a worker's fetch loop and its runners.

A deque of deliveries and a deque of idle runners, each waiting on its own event: a batch of
``n`` deliveries wakes at most ``n`` runners (a shared event would wake every idle runner for
every delivery). It needs no bound of its own: the fetch loop never holds more than the
worker's capacity.
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
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def waiting(self) -> list[Delivery]:
        """The deliveries no runner has taken yet (their leases need renewal too)."""
        return list(self._items)

    def put_many(self, deliveries: Iterable[Delivery]) -> None:
        """Add deliveries and wake one idle runner per delivery."""
        before = len(self._items)
        self._items.extend(deliveries)
        for _ in range(len(self._items) - before):
            if not self._idle:
                break
            self._idle.popleft().set()

    def close(self) -> None:
        """No more deliveries will come; runners drain what is left, then stop."""
        self._closed = True
        while self._idle:
            self._idle.popleft().set()

    async def get(self) -> Delivery | None:
        """Return the next delivery, waiting for one; ``None`` once closed and empty."""
        while True:
            if self._items:
                return self._items.popleft()
            if self._closed:
                return None
            wake = anyio.Event()
            self._idle.append(wake)
            try:
                await wake.wait()
            except BaseException:
                if wake in self._idle:
                    self._idle.remove(wake)
                elif self._items and self._idle:  # woken but cancelled: pass the wake-up on
                    self._idle.popleft().set()
                raise
