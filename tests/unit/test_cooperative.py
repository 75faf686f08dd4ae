"""gateway.cooperative: long work in slices, and bulk work waiting for urgent work."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cooperative import Priority, Steps, collected, in_slices, run_through


def squares(values: list[int]) -> Steps[list[int]]:
    out = []
    for v in values:
        out.append(v * v)
        yield
    return out


class Pauses:
    def __init__(self) -> None:
        self.count = 0

    async def pause(self) -> None:
        self.count += 1


@given(st.lists(st.integers(), max_size=50))
def test_where_the_work_pauses_changes_nothing_it_computes(values: list[int]) -> None:
    expected = [v * v for v in values]
    assert run_through(squares(values)) == expected
    pauses = Pauses()
    assert asyncio.run(in_slices(squares(values), pauses.pause, slice_s=0.0)) == expected
    assert pauses.count == len(values)  # a slice of no time: a pause at every step


async def test_work_shorter_than_a_slice_never_pauses() -> None:
    pauses = Pauses()
    assert await in_slices(squares(list(range(100))), pauses.pause, slice_s=60.0) == [
        v * v for v in range(100)
    ]
    assert pauses.count == 0


def test_collected_is_the_list_with_a_step_per_item() -> None:
    steps = collected(iter("abc"))
    assert [next(steps), next(steps), next(steps)] == [None, None, None]
    with pytest.raises(StopIteration) as done:
        next(steps)
    assert done.value.value == ["a", "b", "c"]


async def test_a_pause_waits_while_urgent_work_is_under_way() -> None:
    priority = Priority(max_wait_s=10.0)
    with priority.urgent(), priority.urgent():  # two checks at once
        assert priority.urgent_now == 2
        waiting = asyncio.create_task(priority.pause())
        await asyncio.sleep(0.05)
        assert not waiting.done()
    assert priority.urgent_now == 0
    await asyncio.wait_for(waiting, timeout=1.0)


async def test_a_pause_waits_for_urgent_work_only_so_long() -> None:
    priority = Priority(max_wait_s=0.05)
    with priority.urgent():
        began = time.monotonic()
        await asyncio.wait_for(priority.pause(), timeout=2.0)
        assert time.monotonic() - began >= 0.04  # it did wait, then gave up waiting


async def test_after_a_long_wait_bulk_work_has_a_turn_then_waits_again() -> None:
    """Urgent work that never ends (a provider holding every check) slows bulk work to
    turn_s / (max_wait_s + turn_s) of its pace at worst, never to a crawl."""
    priority = Priority(max_wait_s=0.3, turn_s=0.3)
    with priority.urgent():
        began = time.monotonic()
        await priority.pause()
        assert time.monotonic() - began >= 0.25  # waited its max_wait_s
        began = time.monotonic()
        await priority.pause()  # its turn: no wait
        assert time.monotonic() - began < 0.25
        await asyncio.sleep(0.35)  # its turn is over
        began = time.monotonic()
        await priority.pause()
        assert time.monotonic() - began >= 0.25


async def test_without_urgent_work_a_pause_only_lets_the_loop_run() -> None:
    priority = Priority(max_wait_s=10.0)
    ran = asyncio.Event()
    asyncio.get_running_loop().call_soon(ran.set)
    await asyncio.wait_for(priority.pause(), timeout=1.0)
    assert ran.is_set()


async def test_urgent_work_that_fails_still_ends() -> None:
    priority = Priority(max_wait_s=10.0)
    with pytest.raises(RuntimeError), priority.urgent():
        raise RuntimeError("the check failed")
    assert priority.urgent_now == 0
    await asyncio.wait_for(priority.pause(), timeout=1.0)
