"""Bad input to the customer-match endpoint: clear RFC 9457 problems, nothing half-done."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import ClientResponse

from gateway.delivery.outbox import NewJob
from gateway.models import Role
from gateway.web.auth import mint_client
from tests.integration.conftest import NOW, Api

PATH = "/v1/provisions/customer-match"
BODY: dict[str, Any] = {
    "partner": "google-customer-match",
    "destination": "default",
    "purpose": "ad_customer_match",
    "legal_basis": "consent",
    "idempotency_key": "k-1",
    "records": [{"subject_id": "cust-1", "email": "a@example.com"}],
}


async def problem(api: Api, status: int, path: str = PATH, **kwargs: Any) -> dict[str, Any]:
    resp = await api.call("POST", path, Role.SENDER, **kwargs)
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    body: dict[str, Any] = await resp.json()
    assert body["status"] == status
    assert "Traceback" not in str(body)
    return body


@pytest.mark.parametrize(
    ("change", "status", "pointer"),
    [
        ({"partner": "no-such-partner"}, 404, "/partner"),
        ({"partner": "sample-fraud-provider"}, 422, "/partner"),  # not a customer-match partner
        ({"destination": "elsewhere"}, 404, "/destination"),
        ({"purpose": "no_such_purpose"}, 404, "/purpose"),
        ({"legal_basis": "because"}, 422, "/legal_basis"),
        ({"idempotency_key": "has spaces"}, 422, "/idempotency_key"),
        ({"records": []}, 422, "/records"),
        ({"extra": 1}, 422, "/extra"),
    ],
)
async def test_wrong_fields_are_named(
    api: Api, change: dict[str, Any], status: int, pointer: str | None
) -> None:
    body = await problem(api, status, json={**BODY, **change})
    if pointer is not None:
        assert pointer in [e.get("pointer") for e in body.get("errors", [])]


async def test_a_body_over_the_limit_is_413_not_read(api: Api) -> None:
    records = [{"subject_id": f"c-{n}", "email": "x" * 40 + "@example.com"} for n in range(1)]
    huge = {**BODY, "records": records, "padding": "x" * (50 * 1024 * 1024)}
    await problem(api, 413, json=huge)


async def test_streamed_upload_needs_its_parameters(api: Api) -> None:
    body = await problem(
        api,
        422,
        data="subject_id,email\r\ncust-1,a@example.com\r\n",
        headers={"Content-Type": "text/csv"},
    )
    named = {e.get("parameter") for e in body["errors"]}
    assert {"partner", "purpose", "idempotency_key"} <= named


@pytest.mark.parametrize(
    ("query", "status", "parameter"),
    [
        ("partner=acme&purpose=ad_customer_match", 404, "partner"),
        ("partner=google-customer-match&purpose=astrology", 404, "purpose"),
        ("partner=google-customer-match&purpose=ad_customer_match&destination=x", 404,
         "destination"),
    ],
)  # fmt: skip
async def test_a_streamed_uploads_problems_name_its_query_parameters(
    api: Api, query: str, status: int, parameter: str
) -> None:
    """They came in the query string: named as parameters, not as pointers into the body."""
    body = await problem(
        api, status, path=f"{PATH}?{query}&idempotency_key=k-q",
        data=b"subject_id,email\r\ncust-1,a@example.com\r\n", headers={"Content-Type": "text/csv"},
    )  # fmt: skip
    assert body["errors"][0]["parameter"] == parameter
    assert "pointer" not in body["errors"][0]


async def post_csv(api: Api, key: str, data: bytes) -> ClientResponse:
    """A streamed CSV upload to the sample Customer Match partner under `key`."""
    query = f"partner=google-customer-match&purpose=ad_customer_match&idempotency_key={key}"
    headers = {"Content-Type": "text/csv"}
    return await api.call("POST", f"{PATH}?{query}", Role.SENDER, data=data, headers=headers)


async def test_a_csv_header_with_unknown_columns_is_refused_whole(api: Api) -> None:
    resp = await post_csv(api, "k-h", b"subject_id,email,shoe_size\r\ncust-1,a@example.com,44\r\n")
    assert resp.status == 422
    assert "shoe_size" in await resp.text()
    # No job was opened for it: nothing holds the idempotency key.
    probe = NewJob(
        job_id="probe", client_id=api.client_ids[Role.SENDER], idempotency_key="k-h",
        request_sha256="0" * 64, kind="customer_match", partner_id="google-customer-match",
        destination="default", purpose="ad_customer_match", legal_basis="consent",
        transfer_id="probe", created_at=NOW,
    )  # fmt: skip
    _, created = await api.services.store.create_job(probe)
    assert created


async def test_an_empty_body_is_refused_before_a_job_holds_its_key(api: Api) -> None:
    for empty in (b"", b"subject_id,email\r\n"):
        resp = await post_csv(api, "k-empty", empty)
        assert resp.status == 422, await resp.text()
    resp = await post_csv(api, "k-empty", b"subject_id,email\r\ncust-1,a@example.com\r\n")
    assert resp.status == 202, await resp.text()  # the key was still free
    assert (await resp.json())["counts"]["received"] == 1


async def test_a_spreadsheet_csv_with_a_byte_order_mark_is_read(api: Api) -> None:
    resp = await post_csv(
        api, "k-bom", "\ufeffsubject_id,email\r\ncust-1,a@example.com\r\n".encode()
    )
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["counts"]["received"] == 1


async def test_unsupported_media_type(api: Api) -> None:
    await problem(api, 415, data="<xml/>", headers={"Content-Type": "application/xml"})


@pytest.mark.parametrize(
    "media", ["text/csv; charset=shift_jis", "application/json; charset=utf-16"]
)
async def test_a_body_in_another_charset_is_refused_whole(api: Api, media: str) -> None:
    """Bodies are UTF-8: a Shift_JIS CSV is one 415, not a job of lines "not valid UTF-8"."""
    query = "partner=google-customer-match&purpose=ad_customer_match&idempotency_key=k-sjis"
    data = "subject_id,family_name\r\ncust-1,佐藤\r\n".encode("shift_jis")
    body = await problem(
        api, 415, path=f"{PATH}?{query}", data=data, headers={"Content-Type": media}
    )
    assert "UTF-8" in body["detail"]


async def test_other_roles_may_not_upload(api: Api) -> None:
    for role in (Role.FRAUD, Role.COMPLIANCE, Role.ADMIN):
        resp = await api.call("POST", PATH, role, json=BODY)
        assert resp.status == 403


async def test_a_sender_may_only_upload_to_its_own_partners(api: Api) -> None:
    record, key = mint_client(
        name="other", role=Role.SENDER, partners=("sample-point-program",), now=NOW
    )
    await api.services.store.create_client(record)
    resp = await api.http.post(PATH, json=BODY, headers={"Authorization": f"Bearer {key}"})
    assert resp.status == 403
