"""Garbage-collector settings for a process that exists to run a worker.

A worker allocates a few short-lived container objects per task (the decoded envelope, its
arguments, the delivery, the result record) and keeps a batch of them alive while the batch
runs and settles. With CPython's default young-generation threshold (700 allocations) a batch
of a few hundred deliveries triggers several collections that find nothing to free, promote
the live batch to the older generations, and so make the full collections that follow scan
it again — along with every module, function and class loaded at start-up. Measured on a
Redis drain of 50,000 no-op tasks: ~90 ms of collections with the defaults, ~25 ms with the
settings below (``docs/benchmarks.md``).

:func:`tune_gc` freezes what exists at start-up (after loading the app: it is never garbage)
and raises the young threshold, so a collection runs when a batch's objects are mostly gone.
Cyclic garbage still gets collected, a little later. ``chicory worker`` applies it unless
``--no-gc-tuning`` is given; an application embedding :class:`~chicory.worker.Worker` owns its
process and its collector, so the worker class never touches them.
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["YOUNG_THRESHOLD", "tune_gc"]

YOUNG_THRESHOLD: Final = 10_000
"""Allocations (net of frees) between young-generation collections after :func:`tune_gc`."""


def tune_gc() -> None:
    """Collect once, freeze the surviving start-up objects, and raise the young threshold.

    Call it once, after importing and building the app and before serving. The older
    generations' thresholds are kept; a young threshold already above
    :data:`YOUNG_THRESHOLD` is kept too.
    """
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_THRESHOLD), middle, old)
