"""The transport: the one place that talks HTTP to partners (architecture: the only
`aiohttp.ClientSession` user), behind a Protocol so the worker and the fraud checks can be
driven by any implementation.

aiohttp's exceptions are translated here, once (house rule 4): every way a request can fail
without an HTTP answer becomes a `TransportError`, which is always worth retrying; an HTTP
answer, whatever its status, is returned for the caller to judge (`is_retryable_status`).
"""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

import aiohttp

from gateway.errors import GatewayError
from gateway.http_retry import is_retryable_status

__all__ = [
    "AiohttpTransport",
    "HttpResponse",
    "Transport",
    "TransportError",
    "is_retryable_status",
    "retry_after_seconds",
]

MAX_RETRY_AFTER_S: Final = 300.0  # a partner asking for longer is treated as a longer outage
MAX_RESPONSE_BYTES: Final = 1 << 20  # a partner's answer is a status document, never bulk


class TransportError(GatewayError):
    """No HTTP answer: connection refused or dropped, timeout, DNS, TLS. Retryable."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class Transport(Protocol):
    async def post(
        self, url: str, body: bytes, *, headers: Mapping[str, str], limit_s: float
    ) -> HttpResponse:
        """POST `body`; the answer whatever its status. Raises TransportError when there is
        no answer within `limit_s` seconds."""


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """RFC 9110 §10.2.3 Retry-After: delay-seconds or an HTTP-date; None when absent or
    unreadable. Capped at MAX_RETRY_AFTER_S; a date in the past means 0."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 §5.6.7: an HTTP-date is always GMT
        when = when.replace(tzinfo=UTC)
    return min(max((when - now).total_seconds(), 0.0), MAX_RETRY_AFTER_S)


class AiohttpTransport:
    """Transport over one shared ClientSession (connection pooling, keep-alive)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def post(
        self, url: str, body: bytes, *, headers: Mapping[str, str], limit_s: float
    ) -> HttpResponse:
        try:
            async with asyncio.timeout(limit_s):
                async with self._session.post(url, data=body, headers=dict(headers)) as response:
                    payload = await response.content.read(MAX_RESPONSE_BYTES)
                    return HttpResponse(response.status, dict(response.headers), payload)
        except TimeoutError as exc:
            raise TransportError(f"no answer within {limit_s:.3f} s") from exc
        except aiohttp.ClientError as exc:  # refused, reset, dropped, TLS, invalid URL, ...
            raise TransportError(f"{type(exc).__name__}: the partner could not be reached") from exc
        except OSError as exc:
            raise TransportError(f"{type(exc).__name__}: the partner could not be reached") from exc
