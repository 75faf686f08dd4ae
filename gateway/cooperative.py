"""Long CPU work on the event loop, in slices short enough for a fraud check to get through.

One event loop answers a checkout's fraud check within its time budget while it plans an
upload's chunks of ten thousand records, builds their delivery outcomes and parses its lines.
Each of those is pure code that runs for a few hundred milliseconds; run at once, it holds every
check that arrives meanwhile (measured: checks during an upload waited 0.5 to 1.5 s).

So that work is written as a generator of `Steps`: it yields, doing nothing else, at points
where stopping costs nothing (after a record, say) and returns its result. `in_slices` runs it
on the loop and pauses whenever a slice of `SLICE_S` has passed; `run_through` runs it at once,
for callers that are not on a loop (tests, tools). The work stays a plain function of its
inputs: where it pauses changes nothing it computes.

Giving the loop back is not enough on a machine an upload keeps busy: the check's next step
then competes with the upload's next slice, its appends' threads and the partners' processes
for the same cores and the same interpreter lock. So work a person waits for declares itself
(`Priority.urgent`: a fraud check, from its request to its answer) and bulk work, at each
pause (`Priority.pause`), waits while any is under way, for at most `MAX_WAIT_S`. Urgent work
that lasts longer (checks that never stop, or a slow provider holding each one for hundreds of
milliseconds, during which the loop has nothing else to do) has had its turn: bulk work then
runs for `TURN_S` without waiting, so an upload keeps at least a fifth of its pace.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Generator, Iterable, Iterator
from time import monotonic, perf_counter
from typing import Final, TypeVar

__all__ = [
    "MAX_WAIT_S",
    "SLICE_S",
    "TURN_S",
    "Priority",
    "Steps",
    "collected",
    "in_slices",
    "run_through",
    "yield_loop",
]

T = TypeVar("T")
Steps = Generator[None, None, T]  # yields where it may pause; returns its result

# The longest the loop is held between two chances to run something else. A pause costs one
# turn of the loop (tens of microseconds), so 2 ms keeps that to about 1% of the work.
SLICE_S: Final = 0.002
# The longest bulk work waits at one pause for urgent work to end, and then how long it runs
# without waiting (module docstring): under urgent work that never ends, a fifth of its pace.
MAX_WAIT_S: Final = 0.1
TURN_S: Final = 0.025


async def yield_loop() -> None:
    """Let the loop run whatever else is ready, then go on."""
    await asyncio.sleep(0)


class Priority:
    """Urgent work under way, which bulk work waits for at its pauses. One per event loop's
    service; use it on that loop only."""

    def __init__(self, *, max_wait_s: float = MAX_WAIT_S, turn_s: float = TURN_S) -> None:
        self._urgent = 0
        self._idle = asyncio.Event()  # no urgent work under way
        self._idle.set()
        self.max_wait_s = max_wait_s  # the longest one pause waits for urgent work
        self.turn_s = turn_s  # then how long pauses do not wait
        self._free_until = 0.0  # (monotonic) pauses before this do not wait: bulk's turn

    @property
    def urgent_now(self) -> int:
        """How many urgent tasks are under way."""
        return self._urgent

    @contextlib.contextmanager
    def urgent(self) -> Iterator[None]:
        """Bulk work waits at its pauses while this block runs."""
        self._urgent += 1
        self._idle.clear()
        try:
            yield
        finally:
            self._urgent -= 1
            if not self._urgent:
                self._idle.set()

    async def pause(self) -> None:
        """Give the loop back; while urgent work is under way, wait for it to end, for at
        most max_wait_s. After a wait that reached max_wait_s, pauses for turn_s only give
        the loop back."""
        await asyncio.sleep(0)
        if self._urgent and monotonic() >= self._free_until:
            try:
                async with asyncio.timeout(self.max_wait_s):
                    await self._idle.wait()
            except TimeoutError:  # urgent work that lasts: bulk work's turn now
                self._free_until = monotonic() + self.turn_s


def run_through(steps: Steps[T]) -> T:
    """The result of `steps`, run without pausing."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result


async def in_slices(
    steps: Steps[T],
    pause: Callable[[], Awaitable[None]] = yield_loop,
    slice_s: float = SLICE_S,
) -> T:
    """The result of `steps`, awaiting `pause` (Priority.pause, say) once each `slice_s` of
    work."""
    deadline = perf_counter() + slice_s
    while True:
        try:
            next(steps)
        except StopIteration as done:
            result: T = done.value
            return result
        if perf_counter() >= deadline:
            await pause()
            deadline = perf_counter() + slice_s


def collected(items: Iterable[T]) -> Steps[list[T]]:
    """`list(items)`, pausing after each item (items made one by one by a generator)."""
    out: list[T] = []
    for item in items:
        out.append(item)
        yield
    return out
