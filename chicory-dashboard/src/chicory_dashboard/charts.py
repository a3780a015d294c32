"""Throughput and failures over time, from the workers' heartbeats, drawn as inline SVG.

Every heartbeat carries a worker's running totals (deliveries handled, tasks dead-lettered).
A :class:`Sampler` reads them every few seconds and keeps the increase since its previous
reading, per worker (a worker that restarted or vanished adds nothing negative), in a ring
of :data:`SAMPLES` readings: the last few minutes. The charts therefore start when the
dashboard starts watching (``chicory dashboard`` samples in the background; a dashboard
mounted in another app samples while one of its overview pages is open).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from typing import Final

import attrs

from chicory.admin import WorkerStatus

__all__ = ["SAMPLES", "Chart", "Sample", "Sampler", "chart"]

SAMPLES: Final = 150
"""Readings kept: five minutes at the default two seconds between readings."""


@attrs.frozen
class Sample:
    """Per second rates between two readings.

    Attributes:
        at: When the later reading was taken (``time.time()``).
        processed: Deliveries handled per second.
        failed: Tasks dead-lettered per second.
    """

    at: float
    processed: float
    failed: float


class Sampler:
    """Turns heartbeat totals into rates (see the module docstring).

    Args:
        interval: Seconds between readings; a reading asked for sooner is skipped.
    """

    def __init__(self, interval: float = 2.0) -> None:
        self.interval = interval
        self.samples: deque[Sample] = deque(maxlen=SAMPLES)
        self._totals: dict[str, tuple[int, int]] = {}
        self._last: float | None = None

    def due(self, now: float | None = None) -> bool:
        """Whether a reading is due."""
        now = time.time() if now is None else now
        return self._last is None or now - self._last >= self.interval * 0.9

    def record(self, workers: Sequence[WorkerStatus], now: float | None = None) -> None:
        """Take a reading of ``workers``' totals."""
        now = time.time() if now is None else now
        processed = failed = 0
        totals = {}
        for worker in workers:
            totals[worker.worker_id] = (worker.processed, worker.failed)
            before = self._totals.get(worker.worker_id)
            if before is not None:
                processed += max(worker.processed - before[0], 0)
                failed += max(worker.failed - before[1], 0)
        if self._last is not None and now > self._last:
            span = now - self._last
            self.samples.append(Sample(at=now, processed=processed / span, failed=failed / span))
        self._totals = totals
        self._last = now


@attrs.frozen
class Chart:
    """One series ready for the SVG template.

    Attributes:
        points: ``x,y`` pairs of the polyline (SVG user units, origin top left).
        area: The polygon under the line.
        peak: The largest value shown (the top of the chart).
        last: The latest value.
        width: Drawing width.
        height: Drawing height.
    """

    points: str
    area: str
    peak: float
    last: float
    width: int
    height: int


def chart(values: Sequence[float], *, width: int = 600, height: int = 120) -> Chart:
    """Lay ``values`` (oldest first) out over the last :data:`SAMPLES` slots."""
    peak = max([*values, 1.0])
    step = width / max(SAMPLES - 1, 1)
    start = width - step * (len(values) - 1) if values else width
    coords = [
        (start + index * step, height - (value / peak) * (height - 4) - 2)
        for index, value in enumerate(values)
    ]
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    area = f"{start:.1f},{height} {points} {width},{height}" if coords else ""
    return Chart(
        points=points,
        area=area,
        peak=peak,
        last=values[-1] if values else 0.0,
        width=width,
        height=height,
    )
