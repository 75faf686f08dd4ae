"""Which HTTP answers are worth sending the same request again for (RFC 9110 §15), in one
place for every partner call: the delivery worker, fraud checks and the adapters that decode
partner answers."""

from __future__ import annotations

from typing import Final

# 408 Request Timeout, 425 Too Early (RFC 8470), 429 Too Many Requests (RFC 6585), and the
# server errors that say "not now" rather than "not this request": 500, 502, 503, 504.
RETRYABLE_STATUSES: Final = frozenset({408, 425, 429, 500, 502, 503, 504})


def is_retryable_status(status: int) -> bool:
    """Whether the same request may be sent again later."""
    return status in RETRYABLE_STATUSES
