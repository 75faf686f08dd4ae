"""Decision preview over HTTP: the policy engine's answer per record, nothing recorded."""

from __future__ import annotations

from typing import Any

from gateway.models import Role
from tests.integration.conftest import Api

GRANT = {
    "notice_version": "privacy-notice-2026-04",
    "obtained_at": "2026-04-01T09:30:00+09:00",
    "channel": "web",
    "foreign_disclosure_version": "us-google-2025-04",
}


def _preview(*records: dict[str, Any]) -> dict[str, Any]:
    return {
        "partner": "google-customer-match",
        "purpose": "ad_customer_match",
        "legal_basis": "consent",
        "records": list(records),
    }


def _codes(decision: dict[str, Any]) -> set[str]:
    return {r["code"] for r in decision["reasons"]}


async def _decide(api: Api, body: dict[str, Any], role: Role = Role.SENDER) -> list[Any]:
    resp = await api.call("POST", "/v1/decisions/preview", role=role, json=body)
    assert resp.status == 200, await resp.text()
    decisions: list[Any] = (await resp.json())["decisions"]
    return decisions


async def test_consented_record_is_allowed_and_minimised(api: Api) -> None:
    await api.call("PUT", "/v1/subjects/m-1/consents/ad_customer_match", json=GRANT)
    [decision] = await _decide(
        api, _preview({"subject_id": "m-1", "email": "dana@example.com", "nickname": "d"})
    )
    assert decision["allowed"] is True
    assert decision["legal_basis"] == "consent"
    assert decision["cross_border_basis"] == "foreign_consent"
    assert decision["fields_sent"] == ["email"]
    assert decision["fields_dropped"] == ["nickname"]
    assert "fields_dropped" in _codes(decision)


async def test_each_record_is_decided_on_its_own(api: Api) -> None:
    await api.call("PUT", "/v1/subjects/m-1/consents/ad_customer_match", json=GRANT)
    await api.call("PUT", "/v1/subjects/m-3/consents/ad_customer_match", json=GRANT)
    await api.call(
        "POST",
        "/v1/subjects/m-3/discontinuance",
        json={"partners": "all", "reason": "asked to stop"},
    )
    decisions = await _decide(
        api,
        _preview(
            {"subject_id": "m-1", "email": "a@example.com"},
            {"subject_id": "m-2", "email": "b@example.com"},
            {"subject_id": "m-3", "email": "c@example.com"},
        ),
    )
    assert [d["subject_id"] for d in decisions] == ["m-1", "m-2", "m-3"]
    assert [d["allowed"] for d in decisions] == [True, False, False]
    assert "consent_missing" in _codes(decisions[1])
    assert "discontinued" in _codes(decisions[2])
    assert decisions[1]["fields_sent"] == []


async def test_a_withdrawal_takes_effect_for_the_next_decision(api: Api) -> None:
    path = "/v1/subjects/m-1/consents/ad_customer_match"
    await api.call("PUT", path, json=GRANT)
    await api.call("DELETE", path)
    [decision] = await _decide(api, _preview({"subject_id": "m-1", "email": "a@example.com"}))
    assert decision["allowed"] is False
    assert "consent_withdrawn" in _codes(decision)


async def test_preview_records_nothing(api: Api) -> None:
    await _decide(api, _preview({"subject_id": "m-9", "email": "a@example.com"}))
    resp = await api.call("GET", "/v1/subjects/m-9/consents")
    body = await resp.json()
    assert body["history"] == []
    assert body["discontinuances"] == []
