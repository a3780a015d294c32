"""tune_gc: the start-up heap is frozen and the young generation collected less often."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from chicory.worker import tune_gc
from chicory.worker.tuning import YOUNG_THRESHOLD


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_freezes_start_up_objects_and_raises_only_the_young_threshold() -> None:
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)


@pytest.mark.usefixtures("restored_gc")
def test_a_higher_young_threshold_is_kept() -> None:
    gc.set_threshold(YOUNG_THRESHOLD * 5, 20, 30)
    tune_gc()
    assert gc.get_threshold() == (YOUNG_THRESHOLD * 5, 20, 30)


@pytest.mark.usefixtures("restored_gc")
def test_cyclic_garbage_made_after_tuning_is_still_collected() -> None:
    tune_gc()

    class Node:
        other: object

    a, b = Node(), Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    del a, b
    gc.collect()
    assert ref() is None
