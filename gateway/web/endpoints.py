"""The endpoint registry: every route declares its roles, bodies and examples in one place.

The same declarations register the aiohttp routes, guard them (401 / 403), describe them in
`/openapi.json`, and drive the endpoint x role matrix test, so none of these can drift apart.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from pydantic import BaseModel

from gateway.errors import FieldError, Forbidden, ValidationFailed, name_like
from gateway.models import ClientRecord, Role
from gateway.web.auth import authenticate

Handler = Callable[[web.Request, "Caller"], Awaitable[web.StreamResponse]]
ALL_ROLES: frozenset[Role] = frozenset(Role)


@dataclass(frozen=True)
class Caller:
    """Who is calling: None for a public endpoint."""

    client: ClientRecord | None

    @property
    def actor(self) -> str:
        return self.client.client_id if self.client else "anonymous"


@dataclass(frozen=True)
class QueryParam:
    name: str
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string"})
    required: bool = False


@dataclass(frozen=True, kw_only=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    roles: frozenset[Role] | None  # None: public, no key needed
    description: str = ""
    # A sender may only act for the partners its client lists; the handler checks the partner
    # named in the body, the registry documents it and the matrix test probes it.
    partner_scoped: bool = False
    request_model: type[BaseModel] | None = None
    request_media: tuple[str, ...] = ("application/json",)
    response_model: type[BaseModel] | None = None
    response_status: int = 200
    # Other successful answers, by status: what each means (same body as response_status).
    also: Mapping[int, str] = field(default_factory=dict)
    # Problem statuses beyond those the endpoint's shape implies (openapi._responses): a 404
    # for a partner named in the body, a 409 for an idempotency key reused, ...
    errors: frozenset[int] = frozenset()
    response_media: str = "application/json"
    query: tuple[QueryParam, ...] = ()
    # A request that a permitted caller could make: path values and body (tests and docs).
    example_path: Mapping[str, str] = field(default_factory=dict)
    example_query: Mapping[str, str] = field(default_factory=dict)
    example_body: Any = None
    example_media: str = "application/json"

    @property
    def has_body(self) -> bool:
        return self.request_model is not None or self.request_media != ("application/json",)

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    def example_url(self) -> str:
        url = self.path.format(**self.example_path)
        return f"{url}?{urlencode(self.example_query)}" if self.example_query else url


def guarded(endpoint: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a handler with authentication and the role check the endpoint declares.

    Raises Unauthorized (no or unknown key) and Forbidden (wrong role) before the handler runs.
    """

    declared = frozenset(q.name for q in endpoint.query)

    async def handle(request: web.Request) -> web.StreamResponse:
        if endpoint.roles is None:
            return await endpoint.handler(request, Caller(None))
        client = await authenticate(request)
        if client.role not in endpoint.roles:
            allowed = ", ".join(sorted(endpoint.roles))
            raise Forbidden(f"role {client.role} may not call this endpoint; it needs {allowed}")
        if not declared.issuperset(request.query):
            raise _unknown_parameters(request, declared)
        return await endpoint.handler(request, Caller(client))

    handle.__name__ = endpoint.handler.__name__
    return handle


def _unknown_parameters(request: web.Request, declared: frozenset[str]) -> ValidationFailed:
    """A query parameter the endpoint does not take is refused, not ignored: a filter whose
    name is mistyped (`subject=` for `subject_id=`) would otherwise answer with everyone."""
    unknown = sorted(set(request.query) - declared)
    takes = f"this endpoint takes: {', '.join(sorted(declared))}" if declared else "it takes none"
    named = [name for name in unknown if name_like(name)]  # never an email pasted as a name
    return ValidationFailed(
        f"{len(unknown)} unknown query parameter(s); {takes}",
        errors=[FieldError.query(name, "not a parameter of this endpoint") for name in named],
    )


def add_routes(app: web.Application, endpoints: list[Endpoint]) -> None:
    """Each endpoint's route; a GET answers HEAD too (RFC 9110 9.3.2: headers, no body)."""
    for endpoint in endpoints:
        handler = guarded(endpoint)
        app.router.add_route(endpoint.method, endpoint.path, handler)
        if endpoint.method == "GET":
            app.router.add_route("HEAD", endpoint.path, handler)
