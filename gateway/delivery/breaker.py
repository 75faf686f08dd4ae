"""A circuit breaker per partner: stop calling a provider that keeps failing, try again later.

closed --(N consecutive failures)--> open --(reset time passed)--> half-open
half-open --(the one trial call succeeds)--> closed;  --(it fails)--> open again

While open, callers get the contract's fallback at once instead of spending their time budget
on a provider that is down (requirements: a declared fallback when the provider is down). The
clock is passed in (house rule 2).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Not thread-safe: one per partner, used from the event loop only."""

    def __init__(self, *, failures: int, reset_s: float, clock: Callable[[], float]) -> None:
        """Raises ValueError unless failures >= 1 and reset_s > 0."""
        if failures < 1 or reset_s <= 0:
            raise ValueError("failures must be >= 1 and reset_s > 0")
        self._threshold = failures
        self._reset_s = reset_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_out = False  # half-open: the one trial call is under way

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self._reset_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open, only one trial at a time."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and not self._trial_out:
            self._trial_out = True
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial_out = False

    def failure(self) -> None:
        self._trial_out = False
        if self._opened_at is not None:  # the half-open trial failed (or a straggler did)
            self._opened_at = self._clock()
            return
        self._failures += 1
        if self._failures >= self._threshold:
            self._opened_at = self._clock()
