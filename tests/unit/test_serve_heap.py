"""`gateway serve` freezes what start-up built: the collector no longer walks it, and garbage
made afterwards is still collected."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway.cli.serve import freeze_startup_heap


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()  # the other tests run with the collector as they found it


@pytest.mark.usefixtures("unfrozen")
def test_what_start_up_built_is_frozen_and_kept() -> None:
    kept = _Node()
    assert any(o is kept for o in gc.get_objects())  # the collector walks it
    freeze_startup_heap()
    assert gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())  # no generation holds it now
    assert isinstance(kept, _Node)  # and it lives on


@pytest.mark.usefixtures("unfrozen")
def test_a_cycle_made_afterwards_is_still_collected() -> None:
    freeze_startup_heap()
    a, b = _Node(), _Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
