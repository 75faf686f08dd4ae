"""Simulated Google Data Manager API v1: `audienceMembers:ingest` and `audienceMembers:remove`.

Paths, request and response schemas come from the discovery document (methods
`datamanager.audienceMembers.ingest` / `.remove`), served under `/google-datamanager/`, e.g.
`POST /google-datamanager/v1/audienceMembers:ingest` (the colon is literal, as Google's custom
methods are; aiohttp routes it as a plain path segment).

Success is 200 `{"requestId": "<uuid>"}` (IngestAudienceMembersResponse /
RemoveAudienceMembersResponse). Errors have Google's JSON error shape (google.rpc.Status as
rendered by Google's HTTP front end), e.g. for a bad field:

    {"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT", "details": [
      {"@type": "type.googleapis.com/google.rpc.BadRequest",
       "fieldViolations": [{"field": "audienceMembers[3]...emailAddress", "description": "..."}]}]}}

`validateOnly: true` is checked and answered like a real request but nothing is recorded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from aiohttp import web

from gateway.sandbox.discovery import Check, DiscoveryDocument
from gateway.sandbox.google_rules import Accepted, Refused, check_request
from gateway.sandbox.lifecycle import STATE
from gateway.sandbox.members import MemberBatch
from gateway.sandbox.pipeline import (
    Outcome,
    PartnerHandler,
    partner_route,
    respond_once,
    stored_json,
    to_response,
)
from gateway.sandbox.state import GOOGLE

PREFIX = "/google-datamanager"
BODY_LIMIT = 64 * 1024 * 1024  # 10,000 members with every identifier stay far below this
_RPC_STATUS = {  # google.rpc.Code names for the HTTP statuses this simulator answers
    400: "INVALID_ARGUMENT",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",  # not an rpc code: Google answers 404; the sandbox is explicit
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"


@dataclass(frozen=True)
class _Operation:
    name: str  # "ingest" | "remove"
    method_id: str
    counter: str


OPERATIONS = (
    _Operation("ingest", "datamanager.audienceMembers.ingest", "ingested_members"),
    _Operation("remove", "datamanager.audienceMembers.remove", "removed_members"),
)


def google_error(
    status: int, message: str, violations: tuple[tuple[str, str], ...] = ()
) -> web.Response:
    """A Google-style JSON error; `violations` become one google.rpc.BadRequest detail."""
    error: dict[str, object] = {
        "code": status,
        "message": message,
        "status": _RPC_STATUS.get(status, "UNKNOWN"),
    }
    if violations:
        fields = [{"field": f, "description": d} for f, d in violations]
        error["details"] = [{"@type": _BAD_REQUEST_TYPE, "fieldViolations": fields}]
    return web.json_response({"error": error}, status=status)


def add_routes(app: web.Application, discovery: DiscoveryDocument) -> None:
    """Register both methods at the paths the discovery document gives them. Raises
    DiscoveryError when the document lacks them or their request schema."""
    for operation in OPERATIONS:
        method = discovery.method(operation.method_id)
        validator = discovery.validator(str(method["request"]["$ref"]))
        handler = _handler(operation, validator)
        route = partner_route(GOOGLE, handler, error=google_error, body_limit=BODY_LIMIT)
        app.router.add_post(f"{PREFIX}/{method['path']}", route)


def _handler(operation: _Operation, validator: Check) -> PartnerHandler:
    check = functools.partial(check_request, validator=validator, ingest=operation.name == "ingest")

    async def handle(request: web.Request, body: bytes) -> web.StreamResponse:
        state = request.app[STATE]
        # On the loop, not in a worker thread: checking is pure CPU under the GIL, and handing
        # it to a thread made a 10,000-member request ~1.5x slower (GIL hand-offs with the
        # loop), measured at 55k vs 85k members/s end to end on loopback.
        verdict = check(body)
        if isinstance(verdict, Refused):
            state.reject(GOOGLE)
            return google_error(400, verdict.message, verdict.violations)
        if verdict.validate_only:
            state.count(GOOGLE, "validate_only")
            return to_response(stored_json(200, {"requestId": state.new_request_id()}))

        def process() -> Outcome:
            return _accept(request, operation, verdict)

        return respond_once(request, GOOGLE, process)

    return handle


def _accept(request: web.Request, operation: _Operation, verdict: Accepted) -> Outcome:
    state = request.app[STATE]
    response = stored_json(200, {"requestId": state.new_request_id()})
    batch = MemberBatch(operation=operation.name, packed=verdict.packed)
    return response, batch, {operation.counter: verdict.members}
