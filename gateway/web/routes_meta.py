"""Health, the OpenAPI document, and the partner contracts (read-only)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel

from gateway.contracts import PartnerContract
from gateway.errors import NotFound
from gateway.web.auth import PARTNER_SCOPED_ROLES, require_partner
from gateway.web.endpoints import ALL_ROLES, Caller, Endpoint
from gateway.web.problems import json_response, model_response
from gateway.web.services import SERVICES

OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)


class Health(BaseModel):
    status: str


class PartnerList(BaseModel):
    partners: list[PartnerContract]


async def get_healthz(request: web.Request, caller: Caller) -> web.StreamResponse:
    return model_response(Health(status="ok"))


async def get_openapi(request: web.Request, caller: Caller) -> web.StreamResponse:
    return json_response(request.app[OPENAPI])


async def get_partners(request: web.Request, caller: Caller) -> web.StreamResponse:
    contracts = list(request.app[SERVICES].contracts.values())
    client = caller.client
    if client is not None and client.role in PARTNER_SCOPED_ROLES:
        contracts = [c for c in contracts if c.id in client.partners]
    return model_response(PartnerList(partners=sorted(contracts, key=lambda c: c.id)))


async def get_partner(request: web.Request, caller: Caller) -> web.StreamResponse:
    partner_id = request.match_info["partner_id"]
    require_partner(caller.client, partner_id)
    contract = request.app[SERVICES].contracts.get(partner_id)
    if contract is None:
        raise NotFound(f"no partner contract {partner_id!r}")
    return model_response(contract)


ENDPOINTS = [
    Endpoint(
        method="GET",
        path="/healthz",
        handler=get_healthz,
        tag="meta",
        summary="Liveness: the service is up",
        roles=None,
        response_model=Health,
    ),
    Endpoint(
        method="GET",
        path="/openapi.json",
        handler=get_openapi,
        tag="meta",
        summary="This API's OpenAPI 3.1 description",
        roles=None,
    ),
    Endpoint(
        method="GET",
        path="/v1/partners",
        handler=get_partners,
        tag="partners",
        summary="The partner contracts in force (a sender sees its own)",
        roles=ALL_ROLES,
        response_model=PartnerList,
    ),
    Endpoint(
        method="GET",
        path="/v1/partners/{partner_id}",
        handler=get_partner,
        tag="partners",
        summary="One partner contract",
        roles=ALL_ROLES,
        partner_scoped=True,
        response_model=PartnerContract,
        example_path={"partner_id": "google-customer-match"},
    ),
]
