"""The collector settings a server process runs with (runtime.gc_tuning)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from sluice.runtime import gc_tuning


class Node:
    next: Node | None = None


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_settle_freezes_startup_objects_and_spaces_young_passes() -> None:
    started = Node()  # made "at start-up": frozen, never looked at again
    gc_tuning.tune_collector()
    assert gc.get_freeze_count() > 0
    assert all(o is not started for o in gc.get_objects())  # no generation holds it
    assert gc.get_threshold()[0] == gc_tuning.YOUNG_THRESHOLD
    # A cycle made after start-up is still collected.
    cycle = Node()
    cycle.next = cycle
    gone = weakref.ref(cycle)
    del cycle
    gc.collect()
    assert gone() is None
