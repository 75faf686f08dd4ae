"""Retrying a delivery: what is retryable, how long to wait, when to give up (tenacity).

Waits grow exponentially with random jitter (so many deliveries failing together do not
retry in lockstep), and never undercut a partner's `Retry-After` (RFC 9110 §10.2.3). Only
failures that may succeed later are retried: no answer at all, or a retryable status
(gateway.http_retry.RETRYABLE_STATUSES); a 4xx that says the request is wrong fails
at once. Time and randomness are passed in (house rule 2), so tests do not wait.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, stop_after_attempt

from gateway.delivery.transport import TransportError
from gateway.errors import GatewayError

__all__ = ["PermanentFailure", "RetryPolicy", "RetryableFailure", "retrying"]


class RetryableFailure(GatewayError):
    """The partner answered with a retryable status; `retry_after` is its Retry-After."""

    def __init__(self, detail: str, *, status: int, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.retry_after = retry_after


class PermanentFailure(GatewayError):
    """The partner refused the request in a way a retry cannot fix (e.g. 400, 403)."""

    def __init__(self, detail: str, *, status: int | None = None) -> None:
        super().__init__(detail)
        self.status = status


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 8  # then the delivery is a dead letter
    initial_s: float = 0.5  # the first wait, before jitter
    max_s: float = 60.0  # the longest exponential wait, before jitter
    jitter_s: float = 1.0  # up to this much random time added to each wait

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        backoff = min(self.max_s, self.initial_s * 2.0 ** (attempt - 1))
        return max(backoff + rng.uniform(0, self.jitter_s), retry_after or 0.0)


def retrying(
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]],
    rng: random.Random,
    before_sleep: Callable[[RetryCallState], Awaitable[None] | None] | None = None,
) -> AsyncRetrying:
    """A tenacity controller: `async for attempt in retrying(...): with attempt: ...`.

    Retries TransportError and RetryableFailure up to policy.max_attempts, then re-raises the
    last one; anything else (PermanentFailure) propagates at once."""

    def wait(state: RetryCallState) -> float:
        failure = state.outcome.exception() if state.outcome else None
        retry_after = failure.retry_after if isinstance(failure, RetryableFailure) else None
        delay: float = policy.delay(state.attempt_number, retry_after, rng)
        return delay

    return AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts),
        wait=wait,
        retry=retry_if_exception_type((TransportError, RetryableFailure)),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
