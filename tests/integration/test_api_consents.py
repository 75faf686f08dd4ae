"""Consent registry over HTTP: grant, withdraw, history, discontinuance, streamed import."""

from __future__ import annotations

import asyncio
from typing import Any

from gateway.models import Role
from tests.integration.conftest import Api

PURPOSE = "ad_customer_match"
GRANT = {
    "notice_version": "privacy-notice-2026-04",
    "obtained_at": "2026-04-01T09:30:00+09:00",
    "channel": "web",
    "foreign_disclosure_version": "us-google-2025-04",
}


async def _json(api: Api, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
    resp = await api.call(method, path, **kwargs)
    return resp.status, await resp.json(content_type=None)


async def test_grant_withdraw_and_history(api: Api) -> None:
    status, event = await _json(api, "PUT", f"/v1/subjects/m-1/consents/{PURPOSE}", json=GRANT)
    assert status == 201
    assert event["action"] == "grant"
    assert event["notice_version"] == "privacy-notice-2026-04"
    assert event["recorded_by"] == api.client_ids[Role.ADMIN]
    assert "seq" not in event  # the store numbers it: GET shows it, the answer shows no null

    status, state = await _json(api, "GET", "/v1/subjects/m-1/consents", role=Role.COMPLIANCE)
    assert status == 200
    assert state["current"][PURPOSE]["action"] == "grant"

    status, _ = await _json(api, "DELETE", f"/v1/subjects/m-1/consents/{PURPOSE}")
    assert status == 200
    status, state = await _json(api, "GET", "/v1/subjects/m-1/consents")
    assert state["current"][PURPOSE]["action"] == "withdraw"
    # The history keeps both: nothing is overwritten.
    assert [e["action"] for e in state["history"]] == ["grant", "withdraw"]
    assert all(isinstance(e["seq"], int) for e in state["history"])


async def test_grant_needs_its_evidence(api: Api) -> None:
    body = {k: v for k, v in GRANT.items() if k != "channel"}
    status, problem = await _json(api, "PUT", f"/v1/subjects/m-1/consents/{PURPOSE}", json=body)
    assert status == 422
    assert {"pointer": "/channel"}.items() <= problem["errors"][0].items()


async def test_an_unknown_purpose_is_404(api: Api) -> None:
    status, problem = await _json(api, "PUT", "/v1/subjects/m-1/consents/astrology", json=GRANT)
    assert status == 404
    assert "astrology" not in problem["detail"]  # never repeated: a caller may paste anything
    assert "ad_customer_match" in problem["detail"]  # what the contracts declare


async def test_an_invalid_subject_id_is_422(api: Api) -> None:
    status, problem = await _json(api, "GET", "/v1/subjects/%20bad%20id/consents")
    assert status == 422
    assert problem["errors"][0]["pointer"] == "/subject_id"


async def test_discontinuance_for_named_partners_and_unknown_ones(api: Api) -> None:
    body = {"partners": ["google-customer-match"], "reason": "phoned the service desk"}
    status, saved = await _json(api, "POST", "/v1/subjects/m-2/discontinuance", json=body)
    assert status == 201
    assert saved["partners"] == ["google-customer-match"]
    status, state = await _json(api, "GET", "/v1/subjects/m-2/consents")
    assert len(state["discontinuances"]) == 1
    status, saved = await _json(
        api, "POST", "/v1/subjects/m-2/discontinuance", json={**body, "partners": "all"}
    )
    assert (status, saved["partners"]) == (201, "all")  # as asked for, not null
    status, state = await _json(api, "GET", "/v1/subjects/m-2/consents")
    assert [d["partners"] for d in state["discontinuances"]] == [["google-customer-match"], "all"]

    bad = {"partners": ["google-customer-match", "acme"], "reason": "x"}
    status, problem = await _json(api, "POST", "/v1/subjects/m-2/discontinuance", json=bad)
    assert status == 422
    assert problem["errors"] == [
        {"pointer": "/partners/1", "detail": "unknown partner: no contract has this id"}
    ]


async def test_import_jsonl_counts_and_rejects_by_line(api: Api) -> None:
    lines = [
        '{"subject_id": "i-1", "purpose": "ad_customer_match", "action": "grant", '
        '"obtained_at": "2026-01-01T00:00:00Z", "notice_version": "n1", "channel": "web"}',
        '{"subject_id": "i-1", "purpose": "ad_customer_match", "action": "withdraw"}',
        '{"subject_id": "i-2", "purpose": "astrology", "action": "grant"}',
        "{not json",
    ]
    status, result = await _json(
        api,
        "POST",
        "/v1/consents/import",
        data="\n".join(lines) + "\n",
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert status == 200
    assert (result["lines"], result["granted"], result["withdrawn"]) == (4, 1, 1)
    assert result["rejected"] == 2
    assert [r["line"] for r in result["rejected_lines"]] == [3, 4]


async def test_import_csv(api: Api) -> None:
    csv = (
        "subject_id,purpose,action,obtained_at,notice_version,channel\n"
        "c-1,ad_customer_match,grant,2026-01-01T00:00:00Z,n1,store\n"
        "c-2,ad_customer_match,grant,2026-01-01T00:00:00Z,n1\n"
    )
    status, result = await _json(
        api, "POST", "/v1/consents/import", data=csv, headers={"Content-Type": "text/csv"}
    )
    assert status == 200
    assert result["granted"] == 1
    assert result["rejected_lines"][0]["line"] == 3
    status, state = await _json(api, "GET", "/v1/subjects/c-1/consents")
    assert state["current"]["ad_customer_match"]["channel"] == "store"


async def test_an_import_waits_while_a_fraud_check_is_under_way(api: Api) -> None:
    """A bulk import is bulk work: after each chunk it read, it waits while a check is under
    way (gateway.cooperative.Priority), and then goes on."""
    priority = api.services.priority
    priority.max_wait_s = 60.0  # as if checks never stopped
    line = (
        '{"subject_id": "w-1", "purpose": "ad_customer_match", "action": "grant", '
        '"obtained_at": "2026-01-01T00:00:00Z", "notice_version": "n1", "channel": "web"}\n'
    )
    headers = {"Content-Type": "application/x-ndjson"}
    with priority.urgent():
        posting = asyncio.create_task(
            _json(api, "POST", "/v1/consents/import", data=line, headers=headers)
        )
        await asyncio.sleep(0.5)
        assert not posting.done()
    status, result = await asyncio.wait_for(posting, timeout=30)
    assert (status, result["granted"]) == (200, 1)


async def test_import_refuses_an_unknown_media_type(api: Api) -> None:
    status, problem = await _json(
        api, "POST", "/v1/consents/import", data="x", headers={"Content-Type": "text/plain"}
    )
    assert status == 415
    assert "text/plain" in problem["detail"]


async def test_import_refuses_another_charset_even_with_an_explicit_format(api: Api) -> None:
    headers = {"Content-Type": "application/x-www-form-urlencoded; charset=shift_jis"}
    status, problem = await _json(
        api, "POST", "/v1/consents/import?format=csv", data=b"x", headers=headers
    )
    assert (status, problem["status"]) == (415, 415)
    assert "UTF-8" in problem["detail"]
