"""Retry timing, Retry-After parsing and the circuit breaker: pure, with time passed in."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.delivery.breaker import BreakerState, CircuitBreaker
from gateway.delivery.retry import PermanentFailure, RetryableFailure, RetryPolicy, retrying
from gateway.delivery.transport import TransportError, is_retryable_status, retry_after_seconds

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        (" 120 ", 120.0),
        ("100000", 300.0),  # capped
        (format_datetime(NOW + timedelta(seconds=30), usegmt=True), 30.0),
        (format_datetime(NOW - timedelta(seconds=30), usegmt=True), 0.0),  # already past
        ("soon", None),
        ("-1", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_forms(value: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(value, NOW) == seconds


def test_retryable_statuses() -> None:
    assert all(is_retryable_status(s) for s in (408, 429, 500, 502, 503, 504))
    assert not any(is_retryable_status(s) for s in (200, 400, 401, 403, 404, 409, 413, 422))


@given(attempt=st.integers(1, 30), retry_after=st.none() | st.floats(0, 300), seed=st.integers())
def test_delay_is_backoff_plus_jitter_and_never_under_retry_after(
    attempt: int, retry_after: float | None, seed: int
) -> None:
    policy = RetryPolicy(initial_s=0.5, max_s=60, jitter_s=1)
    delay = policy.delay(attempt, retry_after, random.Random(seed))
    backoff = min(60, 0.5 * 2 ** (attempt - 1))
    assert delay >= backoff
    assert delay >= (retry_after or 0)
    assert delay <= max(backoff + 1, retry_after or 0)


async def _run(policy: RetryPolicy, failures: list[Exception]) -> tuple[int, list[float]]:
    """Attempts made and the waits slept, failing with `failures` in turn then succeeding."""
    waits: list[float] = []
    attempts = 0

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async for attempt in retrying(policy, sleep=sleep, rng=random.Random(1)):
        with attempt:
            attempts += 1
            if attempts <= len(failures):
                raise failures[attempts - 1]
    return attempts, waits


async def test_retries_what_is_retryable_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_attempts=5, initial_s=0.1, max_s=1, jitter_s=0.1)
    failures: list[Exception] = [
        TransportError("dropped"),
        RetryableFailure("busy", status=429, retry_after=7),
        RetryableFailure("down", status=503),
    ]
    attempts, waits = await _run(policy, failures)
    assert attempts == 4
    assert len(waits) == 3
    assert waits[1] >= 7  # Retry-After wins over the shorter backoff
    assert waits[0] < 1
    assert waits[2] < 1


async def test_gives_up_after_max_attempts_with_the_last_failure() -> None:
    policy = RetryPolicy(max_attempts=3, initial_s=0.01, jitter_s=0)
    with pytest.raises(RetryableFailure, match="third"):
        await _run(
            policy,
            [RetryableFailure(n, status=500) for n in ("first", "second", "third", "fourth")],
        )


async def test_permanent_failure_is_not_retried() -> None:
    with pytest.raises(PermanentFailure):
        _attempts, _ = await _run(RetryPolicy(), [PermanentFailure("bad request", status=400)])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_and_half_opens_later() -> None:
    clock = Clock()
    breaker = CircuitBreaker(failures=3, reset_s=30, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    breaker.success()  # a success resets the count: failures must be consecutive
    for _ in range(3):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state is BreakerState.OPEN
    assert not breaker.allow()
    clock.now = 29.9
    assert not breaker.allow()
    clock.now = 30
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow()  # one trial
    assert not breaker.allow()  # and only one
    breaker.failure()
    assert breaker.state is BreakerState.OPEN  # the trial failed: open for another period
    clock.now = 60
    assert breaker.allow()
    breaker.success()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.allow()
    assert breaker.allow()


def test_breaker_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failures=0, reset_s=1, clock=Clock())
    with pytest.raises(ValueError):
        CircuitBreaker(failures=1, reset_s=0, clock=Clock())
