"""A recipient's key is one partner's own: it sees that partner only and names exactly one."""

from __future__ import annotations

import pytest

from gateway.models import Role
from gateway.web.auth import mint_client
from tests.integration.conftest import NOW, Api


async def test_a_recipient_sees_only_its_own_partner(api: Api) -> None:
    record, key = mint_client(
        name="points", role=Role.RECIPIENT, partners=("sample-point-program",), now=NOW
    )
    await api.services.store.create_client(record)
    resp = await api.http.get("/v1/partners", headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 200
    body = await resp.json()
    ids = [p["id"] for p in body["partners"]] if isinstance(body, dict) else [p["id"] for p in body]
    assert ids == ["sample-point-program"]


@pytest.mark.parametrize("partners", [[], ["sample-point-program", "google-customer-match"]])
async def test_a_recipient_client_names_exactly_one_partner(api: Api, partners: list[str]) -> None:
    resp = await api.call(
        "POST", "/v1/clients", json={"name": "r", "role": "recipient", "partners": partners}
    )
    assert resp.status == 422
    assert "/partners" in [e["pointer"] for e in (await resp.json())["errors"]]


async def test_a_recipient_is_an_attribute_export_partner(api: Api) -> None:
    """Only attribute-export recipients post summaries: another kind's recipient key would be
    a credential for nothing."""
    body = {"name": "r", "role": "recipient", "partners": ["google-customer-match"]}
    resp = await api.call("POST", "/v1/clients", json=body)
    assert resp.status == 422
    [error] = (await resp.json())["errors"]
    assert error["pointer"] == "/partners/0"
    assert "attribute_export" in error["detail"]
