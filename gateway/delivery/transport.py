"""The transport: the one place that talks HTTP to partners (architecture: the only
`aiohttp.ClientSession` user), behind a Protocol so the worker and the fraud checks can be
driven by any implementation.

aiohttp's exceptions are translated here, once (house rule 4): every way a request can fail
without an HTTP answer becomes a `TransportError`, which is always worth retrying; an HTTP
answer, whatever its status, is returned for the caller to judge (`is_retryable_status`).

Data goes only to the URL the contract names: redirects are never followed. A 3xx is returned
as the answer (`is_redirect_status`), and callers treat it as a refusal that a retry cannot
fix: the delivery worker dead-letters it (not retryable, not 2xx), a fraud check answers the
fallback (`provider_redirect`). Following one would POST the data to a URL nobody reviewed
(307/308), or take a GET's answer to another URL for the partner's (301/302/303).

A body is read to its end, however many pieces it arrives in, up to MAX_RESPONSE_BYTES; a
longer one is not read on (the connection is closed, not reused): the answer comes back with
an empty body and `body_too_large` set. A fraud check refuses it (no verdict); the delivery
worker, which judges an answer by its status alone, is not affected.
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
    "is_redirect_status",
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
    body: bytes  # empty when body_too_large
    body_too_large: bool = False  # longer than MAX_RESPONSE_BYTES: not read, not usable

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def is_redirect_status(status: int) -> bool:
    """A 3xx (RFC 9110 §15.4): the partner points elsewhere. Never followed (module doc)."""
    return 300 <= status < 400


class Transport(Protocol):
    async def post(
        self, url: str, body: bytes, *, headers: Mapping[str, str], limit_s: float
    ) -> HttpResponse:
        """POST `body` to `url` and nowhere else; the answer whatever its status (a 3xx
        included: redirects are not followed), its body whole or, past MAX_RESPONSE_BYTES,
        empty with `body_too_large`. Raises TransportError when there is no answer within
        `limit_s` seconds."""


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
                async with self._session.post(
                    url, data=body, headers=dict(headers), allow_redirects=False
                ) as response:
                    payload = await _read_body(response, MAX_RESPONSE_BYTES)
                    return HttpResponse(
                        response.status,
                        dict(response.headers),
                        payload or b"",
                        body_too_large=payload is None,
                    )
        except TimeoutError as exc:
            raise TransportError(f"no answer within {limit_s:.3f} s") from exc
        except aiohttp.ClientError as exc:  # refused, reset, dropped, TLS, invalid URL, ...
            raise TransportError(f"{type(exc).__name__}: the partner could not be reached") from exc
        except OSError as exc:
            raise TransportError(f"{type(exc).__name__}: the partner could not be reached") from exc


async def _read_body(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The whole body, to the end of the stream (a chunked answer arrives in pieces: one
    `read(n)` returns only what has arrived so far); None when it is longer than `limit`, in
    which case no more than `limit` bytes are held. Raises what aiohttp raises for a body cut
    off or a connection dropped (the caller translates it)."""
    if response.content_length is not None and response.content_length > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_any():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
