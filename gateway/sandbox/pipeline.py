"""The steps every simulated partner request goes through, whatever the partner.

    count it -> read the body -> add latency -> fault it? -> (partner handler: validate)
             -> replay a known Idempotency-Key, or process and record it

Faults (`FaultPlan.kinds`):

- "429", "503": that status with `Retry-After` in whole seconds, rounded up: RFC 9110 §10.2.3
  allows only `delay-seconds = 1*DIGIT` (or an HTTP-date), never a fraction.
- "500": a plain 500.
- "timeout": hang `timeout_s` (or until the app stops), then 504; clients normally give up first.
- "drop": close the connection without writing a byte of a response; the client sees the server
  disconnect (aiohttp: ServerDisconnectedError). The handler still returns a 444 (nginx's
  "connection closed without response") that only reaches access logs, never the wire.

Bodies are read from the stream with the sandbox's own limit, not the `client_max_size` of the
app the sandbox is mounted in: a partner takes bigger bodies than the gateway's own API does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from gateway.errors import GatewayError
from gateway.sandbox.lifecycle import RUNTIME, STATE
from gateway.sandbox.state import FaultDecision, StoredResponse

ErrorFactory = Callable[[int, str], web.Response]
"""A partner's error response in its own style, for a status and a message."""
PartnerHandler = Callable[[web.Request, bytes], Awaitable[web.StreamResponse]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Outcome = tuple[StoredResponse, Any, Mapping[str, int]]
"""What processing an accepted request yields: its response, what to record, its counts."""

DROPPED_STATUS = 444
_FAULT_MESSAGES = {
    429: "Too many requests; retry after the delay given in Retry-After.",
    500: "Internal error (injected by the sandbox).",
    503: "The service is unavailable; retry after the delay given in Retry-After.",
    504: "Deadline exceeded (injected by the sandbox).",
}


class BodyTooLarge(GatewayError):
    """The request body is over the partner's limit."""


class BodyIncomplete(GatewayError):
    """The connection ended before the whole request body arrived."""


def partner_route(
    target: str, handler: PartnerHandler, *, error: ErrorFactory, body_limit: int
) -> Handler:
    """An aiohttp handler that does the common steps, then calls `handler(request, body)` for
    a request that is not faulted."""

    async def route(request: web.Request) -> web.StreamResponse:
        state = request.app[STATE]
        decision = state.begin(target, authorized=bool(request.headers.get("Authorization")))
        try:
            body = await read_body(request, body_limit)
        except BodyTooLarge:
            state.reject(target)
            return error(413, f"The request body is larger than {body_limit} bytes.")
        except BodyIncomplete:  # the client went away mid-body: nobody reads this answer
            state.reject(target)
            return error(400, "The request body is incomplete.")
        if decision.latency_s > 0:
            await asyncio.sleep(decision.latency_s)
        if decision.kind is not None:
            return await inject_fault(request, decision, error)
        return await handler(request, body)

    return route


async def read_body(request: web.Request, limit: int) -> bytes:
    """The whole body, at most `limit` bytes. Raises BodyTooLarge, BodyIncomplete."""
    try:
        return await _read_body(request, limit)
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        raise BodyIncomplete(str(exc)) from exc


async def _read_body(request: web.Request, limit: int) -> bytes:
    declared = request.content_length
    if declared is not None:
        if declared > limit:
            raise BodyTooLarge(str(declared))
        return await request.content.readexactly(declared) if declared else b""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(str(size))
        chunks.append(chunk)
    return b"".join(chunks)


async def inject_fault(
    request: web.Request, decision: FaultDecision, error: ErrorFactory
) -> web.StreamResponse:
    """Answer (or not) with the decided fault."""
    kind, plan = decision.kind, decision.plan
    if kind == "drop":
        if request.transport is not None:
            request.transport.close()
        return web.Response(status=DROPPED_STATUS)
    if kind == "timeout":
        stopping = request.app[RUNTIME].stopping
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), plan.timeout_s)
        return error(504, _FAULT_MESSAGES[504])
    status = int(kind or "500")
    response = error(status, _FAULT_MESSAGES[status])
    if status in (429, 503):
        response.headers["Retry-After"] = retry_after_value(plan.retry_after)
    return response


def retry_after_value(seconds: float) -> str:
    """RFC 9110 §10.2.3 delay-seconds: a non-negative integer, so a fraction rounds up."""
    return str(max(0, math.ceil(seconds)))


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get("Idempotency-Key", "").strip()
    return key or None


def stored_json(status: int, payload: Any) -> StoredResponse:
    body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    return StoredResponse(status=status, body=body)


def to_response(stored: StoredResponse, *, replayed: bool = False) -> web.Response:
    # Idempotent-Replayed tells a human reading traffic that this answer is a replay.
    headers = {"Idempotent-Replayed": "true"} if replayed else None
    return web.Response(
        status=stored.status, body=stored.body, content_type=stored.content_type, headers=headers
    )


def respond_once(request: web.Request, target: str, process: Callable[[], Outcome]) -> web.Response:
    """Replay the first response to a known Idempotency-Key; otherwise call `process()` (only
    then) and record its outcome. Synchronous on purpose: no other request of the same key can
    slip in between the look-up and the record."""
    state = request.app[STATE]
    key = idempotency_key(request)
    stored = state.replay(target, key)
    if stored is not None:
        return to_response(stored, replayed=True)
    response, record, counts = process()
    state.accept(target, key, response, record, counts)
    return to_response(response)


def json_error(status: int, message: str) -> web.Response:
    """The error style of the fraud and point-program simulators: {"error": message}."""
    return web.json_response({"error": message}, status=status)
