"""Queue depth, read from the broker when Prometheus scrapes."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import anyio
import anyio.from_thread
from anyio.lowlevel import EventLoopToken
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from chicory.broker import Broker, QueueCounts

__all__ = ["QueueDepthCollector"]

log = logging.getLogger("chicory_prometheus")

STATES = ("ready", "delayed", "in_flight", "dead")


class QueueDepthCollector(Collector):
    """``chicory_queue_messages{queue, state}``: each queue's ``counts()`` at scrape time.

    The scrape runs in the metrics server's thread; the counts are read on the worker's
    event loop (``token``), bounded by ``timeout``. A queue whose counts cannot be read is
    left out of that scrape (and logged).

    Args:
        broker: The worker's broker.
        queues: The queues to report.
        token: The worker's event loop (``anyio.lowlevel.current_token()``).
        timeout: Seconds one queue's counts may take.
    """

    def __init__(
        self, broker: Broker, queues: Sequence[str], token: EventLoopToken, timeout: float = 5.0
    ) -> None:
        self._broker = broker
        self._queues = tuple(queues)
        self._token = token
        self._timeout = timeout

    def describe(self) -> Iterator[GaugeMetricFamily]:
        """The family without samples (so registering it reads nothing)."""
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The family with one sample per queue and state."""
        family = self._family()
        for queue in self._queues:
            try:
                counts = anyio.from_thread.run(self._counts, queue, token=self._token)
            except Exception as exc:
                log.warning("queue depth of %r not read for this scrape: %s", queue, exc)
                continue
            for state in STATES:
                family.add_metric([queue, state], getattr(counts, state))
        yield family

    async def _counts(self, queue: str) -> QueueCounts:
        with anyio.fail_after(self._timeout):
            return await self._broker.counts(queue)

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "chicory_queue_messages",
            "Messages in a queue by state (ready, delayed, in_flight, dead), as the broker "
            "counts them when scraped.",
            labels=["queue", "state"],
        )
