"""`/openapi.json`: an OpenAPI 3.1 document generated from the endpoint registry.

Pydantic emits JSON Schema 2020-12, which OpenAPI 3.1 uses as is.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from gateway import __version__
from gateway.errors import PROBLEM_CLASSES, PROBLEM_MEDIA_TYPE, problem_type
from gateway.models import Role
from gateway.web.auth import PARTNER_SCOPED_ROLES
from gateway.web.endpoints import Endpoint

_REF = "#/components/schemas/{model}"
SchemaRefs = dict[tuple[object, str], Any]  # (model, mode) -> {"$ref": ...}
PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri-reference", "description": "stable problem type"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string", "format": "uri-reference"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "pointer": {"type": "string", "description": "JSON pointer into the body"},
                    "parameter": {"type": "string", "description": "query parameter name"},
                    "detail": {"type": "string"},
                },
            },
        },
    },
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_STATUS_TEXT = {cls.status: cls.title for cls in PROBLEM_CLASSES} | {500: "Internal error"}


def _problem(status: int) -> dict[str, Any]:
    return {
        "description": _STATUS_TEXT.get(status, "Error"),
        "content": {PROBLEM_MEDIA_TYPE: {"schema": _PROBLEM_REF}},
    }


def _schemas(endpoints: list[Endpoint]) -> tuple[SchemaRefs, Any]:
    wanted: set[tuple[type[BaseModel], JsonSchemaMode]] = set()
    for e in endpoints:
        if e.request_model is not None:
            wanted.add((e.request_model, "validation"))
        if e.response_model is not None:
            wanted.add((e.response_model, "serialization"))
    ordered = sorted(wanted, key=lambda pair: (pair[0].__name__, pair[1]))
    refs, top = models_json_schema(ordered, ref_template=_REF)
    out: SchemaRefs = {}
    for (model, mode), ref in refs.items():
        out[(model, mode)] = ref
    return out, top.get("$defs", {})


def _parameters(e: Endpoint) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
        for p in e.path_params
    ]
    params += [
        {
            "name": q.name,
            "in": "query",
            "required": q.required,
            "description": q.description,
            "schema": dict(q.schema),
        }
        for q in e.query
    ]
    return params


def _request_body(e: Endpoint, refs: SchemaRefs) -> dict[str, Any]:
    if e.request_model is not None:
        content = {"application/json": {"schema": refs[(e.request_model, "validation")]}}
    else:
        content = {m: {"schema": {"type": "string"}} for m in e.request_media}
    return {"required": True, "content": content}


def _responses(e: Endpoint, refs: SchemaRefs) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "Success"}
    if e.response_model is not None:
        ok["content"] = {e.response_media: {"schema": refs[(e.response_model, "serialization")]}}
    elif e.response_status != 204:
        ok["content"] = {e.response_media: {"schema": {}}}
    out = {str(e.response_status): ok}
    out.update({str(status): {**ok, "description": why} for status, why in e.also.items()})
    codes = {500, *e.errors}
    if e.roles is not None:  # and a query parameter it does not take (endpoints.guarded)
        codes |= {401, 403, 422}
    if e.has_body:
        codes |= {400, 413, 415, 422}
    if e.path_params:
        codes |= {404, 422}
    out.update({str(c): _problem(c) for c in sorted(codes)})
    return out


def _operation(e: Endpoint, refs: SchemaRefs) -> dict[str, Any]:
    roles = sorted(e.roles) if e.roles is not None else []
    who = f"Roles: {', '.join(roles)}." if roles else "Public: no API key needed."
    if e.partner_scoped:
        scoped = sorted(Role(r).value for r in roles if Role(r) in PARTNER_SCOPED_ROLES)
        who += f" A {' or '.join(scoped)} only for the partners its client lists."
    op: dict[str, Any] = {
        "operationId": e.handler.__name__,
        "summary": e.summary,
        "description": f"{e.description}\n\n{who}".strip(),
        "tags": [e.tag],
        "x-roles": roles,
        "security": [{"bearerAuth": []}] if e.roles is not None else [],
        "responses": _responses(e, refs),
    }
    if params := _parameters(e):
        op["parameters"] = params
    if e.has_body:
        op["requestBody"] = _request_body(e, refs)
    return op


def build_openapi(endpoints: list[Endpoint]) -> dict[str, Any]:
    refs, defs = _schemas(endpoints)
    paths: dict[str, dict[str, Any]] = {}
    for e in endpoints:
        paths.setdefault(e.path, {})[e.method.lower()] = _operation(e, refs)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Third-party data-sharing gateway",
            "version": __version__,
            "description": "Every outbound provision of personal data, decided, minimised, "
            f"hashed and logged. Errors are RFC 9457 problem details; types: {problem_type('')}*.",
        },
        "paths": paths,
        "components": {
            "schemas": {**defs, "Problem": PROBLEM_SCHEMA},
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "gw_… API key"}
            },
        },
    }
