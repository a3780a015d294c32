"""Delivers lifecycle events to observer plugins without ever slowing tasks down.

Events go into a bounded buffer; one dispatcher task hands them, in order and in batches, to
one dedicated thread that calls the hooks. An observer that blocks holds up only that thread:
the buffer fills and further events are dropped (counted, logged once per burst), while tasks
run on. A raising observer is logged and skipped by :meth:`PluginHost.notify`. Hooks nobody
implements cost one set lookup per event.
"""

from __future__ import annotations

import logging

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from chicory.plugins.host import OBSERVER_HOOKS, PluginHost

__all__ = ["ObserverBus"]

log = logging.getLogger("chicory.worker")

_BATCH = 1000


class ObserverBus:
    """A bounded queue of ``(hook name, event)`` pairs and its dispatcher.

    Args:
        host: The app's plugin host.
        capacity: Events buffered before new ones are dropped.
    """

    def __init__(self, host: PluginHost, capacity: int = 10_000) -> None:
        self._host = host
        self.active = frozenset(h for h in OBSERVER_HOOKS if host.has_observers(h))
        send, receive = anyio.create_memory_object_stream[tuple[str, object]](capacity)
        self._send: MemoryObjectSendStream[tuple[str, object]] = send
        self._receive: MemoryObjectReceiveStream[tuple[str, object]] = receive
        self.dropped = 0

    def emit(self, hook: str, event: object) -> None:
        """Queue an event for ``hook`` if anyone listens; never blocks."""
        if hook not in self.active:
            return
        try:
            self._send.send_nowait((hook, event))
        except anyio.WouldBlock:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("observers are too slow: %d events dropped so far", self.dropped)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    def emit_now(self, hook: str, event: object) -> None:
        """Call ``hook``'s observers right away (for rare worker-level events)."""
        if hook in self.active:
            self._host.notify(hook, event)

    async def run(self) -> None:
        """Dispatch queued events until :meth:`close` is called and the queue is empty."""
        limiter = anyio.CapacityLimiter(1)  # one observer thread: events stay in order
        async with self._receive:
            async for first in self._receive:
                batch = [first]
                while len(batch) < _BATCH:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await anyio.to_thread.run_sync(
                    self._deliver, batch, limiter=limiter, abandon_on_cancel=True
                )

    def _deliver(self, batch: list[tuple[str, object]]) -> None:
        for hook, event in batch:
            self._host.notify(hook, event)

    def close(self) -> None:
        """Stop accepting events; :meth:`run` returns once the queue is drained."""
        self._send.close()
