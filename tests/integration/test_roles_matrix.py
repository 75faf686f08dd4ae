"""Every endpoint x every role: no key is 401, a wrong role or partner is 403, with a problem
body; a permitted role gets past the guard. The endpoint list comes from the registry, so a new
endpoint is in the matrix the moment it exists."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.errors import PROBLEM_MEDIA_TYPE, problem_type
from gateway.models import Role
from gateway.web.app import all_endpoints
from gateway.web.auth import PARTNER_SCOPED_ROLES, mint_client
from gateway.web.endpoints import Endpoint
from tests.integration.conftest import NOW, Api

ENDPOINTS = all_endpoints()
PROTECTED = [e for e in ENDPOINTS if e.roles is not None]


def _id(e: Endpoint) -> str:
    return f"{e.method} {e.path}"


async def _request(api: Api, e: Endpoint, headers: dict[str, str]) -> tuple[int, str, Any]:
    body: Any = e.example_body
    data = None
    if body is not None:
        data = body if isinstance(body, str) else json.dumps(body)
        headers = {**headers, "Content-Type": e.example_media}
    resp = await api.http.request(e.method, e.example_url(), data=data, headers=headers)
    text = await resp.text()
    parsed = json.loads(text) if text and resp.content_type.endswith("json") else None
    return resp.status, resp.content_type, parsed


async def _auth(api: Api, role: Role) -> dict[str, str]:
    """A key of `role` for a client that may act for every partner: the matrix probes the
    role gate; partner scoping has its own tests below."""
    partners = tuple(api.services.contracts) if role in PARTNER_SCOPED_ROLES else ()
    record, key = mint_client(name=f"matrix-{role}", role=role, partners=partners, now=NOW)
    await api.services.store.create_client(record)
    return {"Authorization": f"Bearer {key}"}


def _assert_problem(status: int, media: str, body: Any, expected: int, slug: str) -> None:
    assert status == expected
    assert media == PROBLEM_MEDIA_TYPE
    assert body["type"] == problem_type(slug)
    assert body["status"] == expected
    assert "Traceback" not in json.dumps(body)


@pytest.mark.parametrize("endpoint", PROTECTED, ids=_id)
async def test_no_key_is_401(api: Api, endpoint: Endpoint) -> None:
    status, media, body = await _request(api, endpoint, {})
    _assert_problem(status, media, body, 401, "unauthorized")


@pytest.mark.parametrize("endpoint", PROTECTED, ids=_id)
async def test_an_unknown_or_malformed_key_is_401(api: Api, endpoint: Endpoint) -> None:
    for header in ("Bearer gw_0000000000000000_" + "A" * 43, "Bearer nonsense", "Basic abc"):
        status, media, body = await _request(api, endpoint, {"Authorization": header})
        _assert_problem(status, media, body, 401, "unauthorized")


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("endpoint", PROTECTED, ids=_id)
async def test_role_matrix(api: Api, endpoint: Endpoint, role: Role) -> None:
    status, media, body = await _request(api, endpoint, await _auth(api, role))
    assert endpoint.roles is not None
    if role in endpoint.roles:
        assert status not in (401, 403), body
        assert status < 500, body
    else:
        _assert_problem(status, media, body, 403, "forbidden")


@pytest.mark.parametrize("endpoint", [e for e in PROTECTED if e.partner_scoped], ids=_id)
async def test_a_sender_is_403_for_another_partner(api: Api, endpoint: Endpoint) -> None:
    record, key = mint_client(
        name="fraud-only-sender", role=Role.SENDER, partners=("sample-fraud-provider",), now=NOW
    )
    await api.services.store.create_client(record)
    status, media, body = await _request(api, endpoint, {"Authorization": f"Bearer {key}"})
    _assert_problem(status, media, body, 403, "forbidden")


@pytest.mark.parametrize(
    "endpoint",
    [e for e in PROTECTED if e.partner_scoped and e.roles and Role.RECIPIENT in e.roles],
    ids=_id,
)
async def test_a_recipient_is_403_for_another_partner(api: Api, endpoint: Endpoint) -> None:
    record, key = mint_client(
        name="fraud-provider-recipient",
        role=Role.RECIPIENT,
        partners=("sample-fraud-provider",),
        now=NOW,
    )
    await api.services.store.create_client(record)
    status, media, body = await _request(api, endpoint, {"Authorization": f"Bearer {key}"})
    _assert_problem(status, media, body, 403, "forbidden")


async def test_a_revoked_key_stops_working(api: Api) -> None:
    record, key = mint_client(name="temp", role=Role.COMPLIANCE, partners=(), now=NOW)
    await api.services.store.create_client(record)
    headers = {"Authorization": f"Bearer {key}"}
    assert (await api.http.get("/v1/partners", headers=headers)).status == 200
    resp = await api.call("DELETE", f"/v1/clients/{record.client_id}")
    assert resp.status == 204
    assert (await api.http.get("/v1/partners", headers=headers)).status == 401


async def test_an_admin_cannot_revoke_its_own_key(api: Api) -> None:
    own = api.client_ids[Role.ADMIN]
    resp = await api.call("DELETE", f"/v1/clients/{own}")
    assert (resp.status, resp.content_type) == (409, "application/problem+json")
    assert (await api.call("GET", "/v1/clients")).status == 200  # still works


@pytest.mark.parametrize("endpoint", [e for e in ENDPOINTS if e.roles is None], ids=_id)
async def test_public_endpoints_need_no_key(api: Api, endpoint: Endpoint) -> None:
    status, _, _ = await _request(api, endpoint, {})
    assert status == 200
