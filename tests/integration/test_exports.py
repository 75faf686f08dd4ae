"""Attribute-estimation exports end to end over real sockets: gateway -> outbox -> worker ->
point-program sandbox -> summary callback -> gateway.

Every test runs on both stores. The sandbox parses the uploaded file in the charset its
Content-Type declares and posts its summary back, with a recipient key minted here, to the
gateway's own socket; what the gateway kept or refused is then read from its API and log.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections import Counter
from typing import Any

from structlog.testing import capture_logs

from gateway.keyring import PSEUDONYMIZATION
from gateway.ledger.transfer_filter import TransferFilter
from gateway.models import Role
from gateway.provisions.attribute_export import field_pseudonym
from gateway.sandbox import SummaryCallback
from gateway.web.auth import mint_client
from tests.integration.conftest import NOW, Live

PARTNER = "sample-point-program"
EXPORT = "/v1/exports/attribute-estimation"
SUMMARIES = f"/v1/partners/{PARTNER}/summaries"
GRANT = {
    "notice_version": "privacy-notice-2026-04",
    "obtained_at": "2026-04-01T09:30:00+09:00",
    "channel": "web",
}
HEADER = "member_id,email,birth_year,gender,postal_code"
WOMAN = "女性"  # two characters Shift_JIS writes as four bytes


async def key_for(live: Live, role: Role, *partners: str) -> str:
    record, key = mint_client(name=f"test-{role}-x", role=role, partners=partners, now=NOW)
    await live.api.services.store.create_client(record)
    return key


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def grant(live: Live, *subjects: str) -> None:
    for subject in subjects:
        path = f"/v1/subjects/{subject}/consents/attribute_estimation"
        resp = await live.api.call("PUT", path, json=GRANT)
        assert resp.status == 201, await resp.text()


def member(n: int, **extra: Any) -> dict[str, Any]:
    # 20 women born 1990 (30-39) and 10 men born 1980 (40-49): two cells of at least 10.
    woman = n < 20
    return {
        "subject_id": f"cust-{n}",
        "member_id": f"M-{n:05d}",
        "email": f"Person.{n}@Example.com",
        "birth_year": 1990 if woman else 1980,
        "gender": WOMAN if woman else "m",
        "postal_code": "100-0001",
        **extra,
    }


async def export(live: Live, key: str, records: list[dict[str, Any]], idem: str) -> dict[str, Any]:
    body = {"partner": PARTNER, "idempotency_key": idem, "records": records}
    resp = await live.api.http.post(EXPORT, json=body, headers=auth(key))
    assert resp.status == 202, await resp.text()
    job: dict[str, Any] = await resp.json()
    return job


async def settled(live: Live, key: str, job_id: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            resp = await live.api.http.get(f"/v1/jobs/{job_id}", headers=auth(key))
            job: dict[str, Any] = await resp.json()
            if job["state"] in ("done", "failed"):
                return job
            await asyncio.sleep(0.05)


async def summary_statuses(live: Live, count: int = 1) -> dict[str, int]:
    """The sandbox's summary callbacks by HTTP status, once `count` have been answered."""
    async with asyncio.timeout(30):
        while True:
            stats = live.sandbox.stats()["point-program"]
            if stats["summaries_posted"] >= count:
                statuses: dict[str, int] = stats["summary_statuses"]
                return statuses
            await asyncio.sleep(0.05)


def callback(live: Live, key: str, mode: str) -> None:
    url = str(live.api.http.make_url(SUMMARIES))
    live.sandbox.summary_callback = SummaryCallback(url=url, api_key=key, mode=mode)


async def entries(live: Live, **filters: Any) -> list[dict[str, Any]]:
    found = await live.api.services.store.ledger_find(
        TransferFilter(**filters), after=-1, limit=1000
    )
    return [json.loads(leaf.leaf or b"{}") for leaf in found]


async def run_export(live: Live, mode: str) -> tuple[str, dict[str, Any]]:
    """Thirty consented members exported with the sandbox answering in `mode`."""
    sender = await key_for(live, Role.SENDER, PARTNER)
    callback(live, await key_for(live, Role.RECIPIENT, PARTNER), mode)
    await grant(live, *(f"cust-{n}" for n in range(30)))
    job = await export(live, sender, [member(n) for n in range(30)], f"x-{mode}")
    done = await settled(live, sender, job["job_id"])
    assert done["state"] == "done"
    return sender, done


async def test_export_writes_the_designated_file_and_logs_each_person(live: Live) -> None:
    sender = await key_for(live, Role.SENDER, PARTNER)
    await grant(live, *(f"cust-{n}" for n in range(31)))
    records = [member(n) for n in range(30)]
    records.append(member(30, gender="👩"))  # no Shift_JIS form: that record alone is rejected
    records.append(member(31))  # no consent
    job = await export(live, sender, records, "x-1")
    assert job["kind"] == "attribute_export"
    assert job["destination"] is None
    assert (
        job["counts"] | {"received": 32, "allowed": 30, "denied": 1, "invalid": 1} == job["counts"]
    )
    done = await settled(live, sender, job["job_id"])
    assert done["state"] == "done"
    assert done["counts"]["delivered"] == 30

    rows = await live.api.services.store.deliveries_of_transfer(job["transfer_id"])
    assert len(rows) == 1  # one chunk, one file
    assert await live.api.services.store.delivery(rows[0].delivery_id) == rows[0]
    assert await live.api.services.store.delivery("no-such-delivery") is None
    assert rows[0].content_type == "text/csv; charset=Shift_JIS"
    text = rows[0].payload.decode("shift_jis")
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    lines = text.split("\r\n")[:-1]
    assert lines[0] == HEADER
    assert len(lines) == 31
    first = dict(zip(HEADER.split(","), lines[1].split(","), strict=True))
    key = live.api.services.keyring.current(PSEUDONYMIZATION).material
    assert first["member_id"] == field_pseudonym(PARTNER, "member_id", "M-00000", key=key)
    assert first["email"] == hashlib.sha256(b"person.0@example.com").hexdigest()
    assert (first["birth_year"], first["gender"], first["postal_code"]) == (
        "1990",
        WOMAN,
        "100-0001",
    )
    assert "Person.0" not in text
    assert "M-00000" not in text

    accepted = live.sandbox.accepted("point-program")
    assert sum(a["rows"] for a in accepted.values()) == 30

    log = await entries(live, partner_id=PARTNER)
    assert Counter(e["outcome"] for e in log) == Counter(allowed=30, delivered=30, denied=2)
    row_hashes = {
        hashlib.sha256(line.encode("shift_jis") + b"\r\n").hexdigest() for line in lines[1:]
    }
    assert {e["payload_sha256"] for e in log if e["outcome"] == "allowed"} == row_hashes
    emoji = next(e for e in log if e["subject"]["id"] == "cust-30")
    assert emoji["outcome"] == "denied"
    assert emoji["reasons"][0]["code"] == "unencodable_value"

    resp = await live.api.http.get(f"/v1/jobs/{job['job_id']}/rejections", headers=auth(sender))
    rejected = [json.loads(line) for line in (await resp.text()).splitlines()]
    unencodable = [r for r in rejected if r["code"] == "unencodable_value"]
    assert [(r["line"], r["field"]) for r in unencodable] == [(31, "gender")]
    assert "👩" not in await resp.text()


async def test_an_honest_summary_is_stored_and_its_receipt_logged(live: Live) -> None:
    sender, _ = await run_export(live, "ok")
    assert await summary_statuses(live) == {"201": 1}
    resp = await live.api.http.get(SUMMARIES, headers=auth(sender))
    assert resp.status == 200
    listed = (await resp.json())["summaries"]
    assert len(listed) == 1
    upload_id = next(iter(live.sandbox.accepted("point-program").values()))["upload_id"]
    assert listed[0]["upload_id"] == upload_id
    assert listed[0]["dimensions"] == ["age_band", "gender"]
    assert {
        (c["values"]["age_band"], c["values"]["gender"], c["count"]) for c in listed[0]["cells"]
    } == {
        ("30-39", WOMAN, 20),
        ("40-49", "m", 10),
    }
    (receipt,) = await entries(live, partner_id=PARTNER, outcome="received")
    assert receipt["subject"] == {"id": "", "key": ""}
    assert receipt["items"] == [{"field": "age_band"}, {"field": "gender"}]
    assert receipt["received"]["obtained_by"] == "attribute_estimation_summary"
    assert receipt["received"]["summary_id"] == listed[0]["summary_id"]
    assert receipt["payload_sha256"] == listed[0]["body_sha256"]
    assert receipt["data_category"] == "statistics"
    for bad in ("after=" + "9" * 5000, "after=-1", "limit=0", "limit=%D9%A1", "after=01"):
        resp = await live.api.http.get(f"{SUMMARIES}?{bad}", headers=auth(sender))
        assert (resp.status, resp.content_type) == (422, "application/problem+json"), bad


async def test_a_summary_with_a_small_cell_is_refused_and_the_refusal_logged(live: Live) -> None:
    sender, _ = await run_export(live, "small_cells")
    assert await summary_statuses(live) == {"422": 1}
    resp = await live.api.http.get(SUMMARIES, headers=auth(sender))
    assert (await resp.json())["summaries"] == []
    assert await entries(live, partner_id=PARTNER, outcome="received") == []
    refusals = list(await entries(live, partner_id=PARTNER, outcome="denied"))
    (refusal,) = [e for e in refusals if e["received"].get("refused")]
    assert refusal["items"] == []
    assert refusal["subject"]["id"] == ""
    messages = [r["message"] for r in refusal["reasons"]]
    assert any("below the minimum cell count 10" in m for m in messages)


async def test_a_summary_with_per_person_rows_is_refused(live: Live) -> None:
    await run_export(live, "per_person")
    assert await summary_statuses(live) == {"422": 1}
    refusals = await entries(live, partner_id=PARTNER, outcome="denied")
    (refusal,) = [e for e in refusals if e.get("received", {}).get("refused")]
    # "members" is not a key a summary declares: counted, never named (it could be anything).
    assert [r["message"] for r in refusal["reasons"]] == [
        "/: 1 undeclared key(s), not named: a summary holds no other key"
    ]
    assert "M-0" not in json.dumps(refusal)  # the rows it carried are not kept


async def test_no_raw_identifier_reaches_a_log_line_or_a_log_entry(live: Live) -> None:
    with capture_logs() as logs:
        await run_export(live, "per_person")
        await summary_statuses(live)
    assert logs, "the access log should have written something"
    text = json.dumps(logs, default=str).lower()
    log = json.dumps(await entries(live, partner_id=PARTNER)).lower()
    for secret in ("person.0@example.com", "m-00000"):
        assert secret not in text
        assert secret not in log


def summary(upload_id: str = "up_1", count: int = 12) -> dict[str, Any]:
    return {
        "upload_id": upload_id,
        "dimensions": ["age_band"],
        "cells": [{"values": {"age_band": "30-39"}, "count": count}],
    }


async def test_the_refusal_answer_is_a_problem_naming_each_cell(live: Live) -> None:
    recipient = await key_for(live, Role.RECIPIENT, PARTNER)
    body = summary(count=3)
    body["dimensions"] = ["age_band", "email"]
    resp = await live.api.http.post(SUMMARIES, json=body, headers=auth(recipient))
    assert resp.status == 422
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    pointers = {e["pointer"] for e in problem["errors"]}
    assert "/dimensions/1" in pointers
    assert "/cells/0/count" in pointers


async def test_only_the_partners_own_recipient_may_post(live: Live) -> None:
    sender = await key_for(live, Role.SENDER, PARTNER)
    other = await key_for(live, Role.RECIPIENT, "sample-fraud-provider")
    for key in (sender, other):
        resp = await live.api.http.post(SUMMARIES, json=summary(), headers=auth(key))
        assert resp.status == 403, await resp.text()
    assert (await live.api.http.post(SUMMARIES, json=summary())).status == 401
    assert await entries(live, partner_id=PARTNER) == []  # nothing was received


async def test_the_same_summary_again_is_a_retry_another_is_a_conflict(live: Live) -> None:
    recipient = await key_for(live, Role.RECIPIENT, PARTNER)
    first = await live.api.http.post(SUMMARIES, json=summary(), headers=auth(recipient))
    assert first.status == 201
    created = await first.json()
    assert created["upload_id"] == "up_1"
    assert created["cells"] == 1
    again = await live.api.http.post(SUMMARIES, json=summary(), headers=auth(recipient))
    assert again.status == 200
    assert await again.json() == created
    other = await live.api.http.post(SUMMARIES, json=summary(count=13), headers=auth(recipient))
    assert other.status == 409
    assert len(await entries(live, partner_id=PARTNER, outcome="received")) == 1


async def test_a_streamed_csv_export(live: Live) -> None:
    sender = await key_for(live, Role.SENDER, PARTNER)
    await grant(live, "cust-1", "cust-2")
    body = (
        "subject_id,member_id,birth_year,gender\r\n"
        f"cust-1,M-1,1990,{WOMAN}\r\n"
        'cust-2,"broken,\r\n'
        "cust-3,M-3,1985,m\r\n"
    )
    resp = await live.api.http.post(
        f"{EXPORT}?partner={PARTNER}&idempotency_key=x-csv",
        data=body.encode(),
        headers={**auth(sender), "Content-Type": "text/csv"},
    )
    assert resp.status == 202, await resp.text()
    job = await resp.json()
    assert job["counts"] | {"received": 3, "allowed": 1, "denied": 1, "invalid": 1} == job["counts"]
    await settled(live, sender, job["job_id"])
    (row,) = await live.api.services.store.deliveries_of_transfer(job["transfer_id"])
    lines = row.payload.decode("shift_jis").split("\r\n")
    assert lines[0] == HEADER
    assert lines[1].endswith(f",,1990,{WOMAN},")


async def test_an_export_to_a_partner_of_another_kind_or_not_its_own(live: Live) -> None:
    sender = await key_for(live, Role.SENDER, "google-customer-match")
    body = {"partner": "google-customer-match", "idempotency_key": "k", "records": [member(1)]}
    resp = await live.api.http.post(EXPORT, json=body, headers=auth(sender))
    assert resp.status == 422
    body["partner"] = PARTNER
    resp = await live.api.http.post(EXPORT, json=body, headers=auth(sender))
    assert resp.status == 403


def test_field_pseudonyms_are_keyed_and_bound_to_the_partner() -> None:
    key = b"k" * 32
    one = field_pseudonym("a", "member_id", "M-1", key=key)
    assert one != field_pseudonym("b", "member_id", "M-1", key=key)
    assert one != hmac.new(key, b"M-1", hashlib.sha256).hexdigest()
    message = b"gateway.field-pseudonym/v1\x00a\x00member_id\x00M-1"  # as docs/exports.md says
    assert one == hmac.new(key, message, hashlib.sha256).hexdigest()
    assert len(one) == 64


async def rejections_of(live: Live, key: str, job_id: str) -> tuple[str, list[dict[str, Any]]]:
    resp = await live.api.http.get(f"/v1/jobs/{job_id}/rejections", headers=auth(key))
    text = await resp.text()
    return text, [json.loads(line) for line in text.splitlines()]


async def test_a_rejection_never_names_a_key_the_gateway_does_not_know(live: Live) -> None:
    sender = await key_for(live, Role.SENDER, PARTNER)
    await grant(live, *(f"cust-{n}" for n in range(4)))
    records = [
        member(0),
        member(1, **{"hanako.sato@example.jp": "x"}),  # a caller's key: never repeated
        member(2, phone="090-1234-5678"),  # a field the gateway knows, not a column: named
        member(3, Hanako_Sato=None),  # null or not, a key that is no column rejects the record
    ]
    job = await export(live, sender, records, "x-unknown")
    assert job["counts"] | {"received": 4, "allowed": 1, "invalid": 3} == job["counts"]
    text, rejected = await rejections_of(live, sender, job["job_id"])
    assert [(r["line"], r["code"], r["field"]) for r in rejected] == [
        (2, "unknown_field", None),
        (3, "unknown_field", "phone"),
        (4, "unknown_field", None),
    ]
    for secret in ("hanako", "Hanako", "090-1234-5678"):
        assert secret not in text
    # Rejected for their shape: never decided, nothing left, so no log entry (no provision).
    await settled(live, sender, job["job_id"])
    logged = {e["subject"]["id"] for e in await entries(live, partner_id=PARTNER)}
    assert logged == {"cust-0"}


async def test_a_streamed_export_in_another_charset_is_refused_whole(live: Live) -> None:
    sender = await key_for(live, Role.SENDER, PARTNER)
    await grant(live, "cust-1")
    body = f"subject_id,member_id,gender\r\ncust-1,M-1,{WOMAN}\r\n"
    url = f"{EXPORT}?partner={PARTNER}&idempotency_key=x-sjis"
    for media, data in (
        ("text/csv; charset=shift_jis", body.encode("shift_jis")),
        ("application/x-ndjson; charset=Shift_JIS", b'{"subject_id": "cust-1"}\n'),
    ):
        resp = await live.api.http.post(
            url, data=data, headers={**auth(sender), "Content-Type": media}
        )
        assert resp.status == 415, await resp.text()
        assert "must be UTF-8" in (await resp.json(content_type=None))["detail"]
    resp = await live.api.http.post(  # no job held the key: the UTF-8 file goes through
        url, data=body.encode(), headers={**auth(sender), "Content-Type": "text/csv; charset=UTF-8"}
    )
    assert resp.status == 202, await resp.text()
    assert (await resp.json())["counts"]["allowed"] == 1
