"""`/openapi.json` is a valid OpenAPI 3.1 document describing every route, role and error."""

from __future__ import annotations

from typing import Any

from openapi_spec_validator import validate

from gateway.web.app import all_endpoints
from tests.integration.conftest import Api


async def _doc(api: Api) -> dict[str, Any]:
    resp = await api.http.get("/openapi.json")
    assert resp.status == 200
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_the_document_validates_as_openapi_3_1(api: Api) -> None:
    doc = await _doc(api)
    assert doc["openapi"].startswith("3.1")
    validate(doc)


async def test_every_route_is_described_with_roles_and_problem_bodies(api: Api) -> None:
    doc = await _doc(api)
    # /sandbox/ is the partner simulators' mount (their APIs, not the gateway's).
    registered = {
        (r.method, r.resource.canonical)
        for r in api.http.app.router.routes()  # type: ignore[union-attr]
        if r.resource is not None
        and r.method != "HEAD"
        and not r.resource.canonical.startswith("/sandbox/")
    }
    described = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert registered == described
    for endpoint in all_endpoints():
        op = doc["paths"][endpoint.path][endpoint.method.lower()]
        assert op["x-roles"] == sorted(endpoint.roles or [])
        if endpoint.roles is not None:
            for status in ("401", "403"):
                problem = op["responses"][status]["content"]["application/problem+json"]
                assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}
        if endpoint.has_body:
            assert "422" in op["responses"]
            assert "requestBody" in op
