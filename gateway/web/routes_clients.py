"""API clients (role admin): create, list, revoke. Keys are shown once, stored hashed."""

from __future__ import annotations

from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.errors import Conflict, NotFound, ValidationFailed
from gateway.models import ClientRecord, Role
from gateway.web.auth import client_partner_problems, mint_client
from gateway.web.endpoints import Caller, Endpoint
from gateway.web.problems import model_response, read_model
from gateway.web.services import SERVICES


class NewClient(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200)
    role: Role
    partners: tuple[str, ...] = ()


class ClientOut(BaseModel):
    """A client as shown to admins: never its key or the key's hash."""

    model_config = ConfigDict(frozen=True)

    client_id: str
    name: str
    role: Role
    partners: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, client: ClientRecord) -> ClientOut:
        return cls(**client.model_dump(exclude={"key_sha256"}))


class CreatedClient(ClientOut):
    api_key: str = Field(description="Shown once; only its SHA-256 is stored.")


class ClientList(BaseModel):
    clients: list[ClientOut]


async def post_client(request: web.Request, caller: Caller) -> web.StreamResponse:
    services = request.app[SERVICES]
    body = await read_model(request, NewClient)
    if errors := client_partner_problems(body.role, body.partners, services.contracts):
        raise ValidationFailed("the client's partners are not valid", errors=errors)
    record, key = mint_client(
        name=body.name, role=body.role, partners=body.partners, now=services.clock()
    )
    await services.store.create_client(record)
    out = CreatedClient(**ClientOut.of(record).model_dump(), api_key=key)
    return model_response(out, status=201)


async def get_clients(request: web.Request, caller: Caller) -> web.StreamResponse:
    clients = await request.app[SERVICES].store.list_clients()
    return model_response(ClientList(clients=[ClientOut.of(c) for c in clients]))


async def delete_client(request: web.Request, caller: Caller) -> web.StreamResponse:
    services = request.app[SERVICES]
    client_id = request.match_info["client_id"]
    if caller.client is not None and caller.client.client_id == client_id:
        raise Conflict(
            "a client cannot revoke its own key (that would lock out the last admin); another "
            "admin, or `gateway clients revoke` on the service's host, can"
        )
    if not await services.store.revoke_client(client_id, services.clock()):
        raise NotFound(f"no active client {client_id!r}")
    return web.Response(status=204)


ADMIN = frozenset({Role.ADMIN})
ENDPOINTS = [
    Endpoint(
        method="POST",
        path="/v1/clients",
        handler=post_client,
        tag="clients",
        summary="Create an API client; its key is in the answer, once",
        roles=ADMIN,
        request_model=NewClient,
        response_model=CreatedClient,
        response_status=201,
        example_body={"name": "crm-batch", "role": "sender", "partners": ["google-customer-match"]},
    ),
    Endpoint(
        method="GET",
        path="/v1/clients",
        handler=get_clients,
        tag="clients",
        summary="List API clients (without keys)",
        roles=ADMIN,
        response_model=ClientList,
    ),
    Endpoint(
        method="DELETE",
        path="/v1/clients/{client_id}",
        handler=delete_client,
        tag="clients",
        summary="Revoke an API client; its key stops working at once",
        roles=ADMIN,
        response_status=204,
        errors=frozenset({409}),  # the caller's own key
        example_path={"client_id": "0000000000000000"},
    ),
]
