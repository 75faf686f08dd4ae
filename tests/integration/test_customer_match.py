"""Customer Match end to end over real sockets: gateway -> outbox -> worker -> sandbox.

Every test runs on both stores. The sandbox validates each request against Google's
discovery document and counts members by digest, so "exactly once" is checked on what
arrived, not on what the gateway believes it sent.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any

from gateway.ledger.transfer_filter import TransferFilter
from gateway.models import Role
from gateway.sandbox import FaultPlan
from gateway.sandbox.members import MemberBatch
from tests.integration.conftest import Live

GRANT = {
    "notice_version": "privacy-notice-2026-04",
    "obtained_at": "2026-04-01T09:30:00+09:00",
    "channel": "web",
    "foreign_disclosure_version": "us-google-2025-04",
}
PARAMS = {
    "partner": "google-customer-match",
    "destination": "default",
    "purpose": "ad_customer_match",
    "legal_basis": "consent",
}


async def grant(live: Live, *subjects: str, purpose: str = "ad_customer_match") -> None:
    for subject in subjects:
        resp = await live.api.call("PUT", f"/v1/subjects/{subject}/consents/{purpose}", json=GRANT)
        assert resp.status == 201, await resp.text()


def record(n: int, **extra: Any) -> dict[str, Any]:
    return {"subject_id": f"cust-{n}", "email": f"Person.{n}@Example.com", **extra}


async def upload(live: Live, records: list[dict[str, Any]], key: str) -> dict[str, Any]:
    body = {**PARAMS, "idempotency_key": key, "records": records}
    resp = await live.api.call("POST", "/v1/provisions/customer-match", Role.SENDER, json=body)
    assert resp.status == 202, await resp.text()
    assert resp.headers["Location"].startswith("/v1/jobs/")
    job: dict[str, Any] = await resp.json()
    return job


async def settled(live: Live, job_id: str, limit_s: float = 30) -> dict[str, Any]:
    """The job once nothing is pending any more."""
    async with asyncio.timeout(limit_s):
        while True:
            resp = await live.api.call("GET", f"/v1/jobs/{job_id}", Role.SENDER)
            job: dict[str, Any] = await resp.json()
            if job["state"] in ("done", "failed"):
                return job
            await asyncio.sleep(0.05)


async def outcomes(live: Live, transfer_id: str) -> Counter[str]:
    leaves = await live.api.services.store.ledger_transfer(transfer_id)
    return Counter(json.loads(leaf.leaf or b"{}")["outcome"] for leaf in leaves)


async def test_allowed_records_arrive_once_and_every_record_is_logged(live: Live) -> None:
    await grant(live, *(f"cust-{n}" for n in range(8)))
    records = [record(n) for n in range(10)]  # cust-8, cust-9: no consent
    records.append({"subject_id": "cust-0b", "phone": "not a phone"})  # no usable identifier
    records.append({"email": "nobody@example.com"})  # no subject id
    job = await upload(live, records, "k-1")
    assert job["counts"]["received"] == 12
    assert job["counts"]["allowed"] == 8
    assert job["counts"]["denied"] == 3  # cust-8, cust-9 and cust-0b (no consent either)
    assert job["counts"]["invalid"] == 1
    done = await settled(live, job["job_id"])
    assert done["state"] == "done"
    assert done["counts"]["delivered"] == 8
    members = live.sandbox.member_counts("ingest")
    assert sum(members.values()) == 8
    assert set(members.values()) == {1}
    assert await outcomes(live, job["transfer_id"]) == Counter(allowed=8, delivered=8, denied=3)


async def test_same_idempotency_key_does_not_upload_twice(live: Live) -> None:
    await grant(live, "cust-1", "cust-2")
    first = await upload(live, [record(1), record(2)], "k-same")
    await settled(live, first["job_id"])
    again = await upload(live, [record(1), record(2)], "k-same")
    assert again["job_id"] == first["job_id"]
    await settled(live, again["job_id"])
    assert sum(live.sandbox.member_counts("ingest").values()) == 2
    assert await outcomes(live, first["transfer_id"]) == Counter(allowed=2, delivered=2)


async def test_a_personalization_consent_sets_ad_personalization(live: Live) -> None:
    """The destination's personalization purpose is a purpose a consent can be recorded for
    (it is no provision purpose of its own), and its grant sends CONSENT_GRANTED."""
    await grant(live, "cust-1", "cust-2")
    await grant(live, "cust-1", purpose="ad_personalization")
    job = await upload(live, [record(1), record(2)], "k-personalization")
    await settled(live, job["job_id"])
    sent = await live.api.services.store.deliveries_of_transfer(job["transfer_id"])
    consents = sorted(
        (json.loads(row.payload)["consent"]["adPersonalization"], row.entry_count) for row in sent
    )
    assert consents == [("CONSENT_DENIED", 1), ("CONSENT_GRANTED", 1)]


async def test_key_reused_with_other_parameters_is_a_conflict(live: Live) -> None:
    await upload(live, [record(1)], "k-c")
    other = {**PARAMS, "legal_basis": "laws_and_regulations"}
    body = {**other, "idempotency_key": "k-c", "records": [record(1)]}
    resp = await live.api.call("POST", "/v1/provisions/customer-match", Role.SENDER, json=body)
    assert resp.status == 409
    assert "/idempotency_key" in [e["pointer"] for e in (await resp.json())["errors"]]


async def test_rejections_name_line_code_and_field_never_the_value(live: Live) -> None:
    await grant(live, "cust-1")
    records = [
        record(1, phone="12"),
        {"subject_id": "cust-2", "shoe": "44"},
        {"subject_id": "cust-3", "hanako.sato@example.jp": None},  # a key that is an email
    ]
    job = await upload(live, records, "k-r")
    resp = await live.api.call("GET", f"/v1/jobs/{job['job_id']}/rejections", Role.SENDER)
    assert resp.status == 200
    text = await resp.text()
    rows = [json.loads(line) for line in text.splitlines()]
    by_line = {(r["line"], r["code"]) for r in rows}
    assert {(2, "unknown_field"), (3, "unknown_field")} <= by_line
    assert any(r["line"] == 1 and r["field"] == "phone" for r in rows)
    assert '"44"' not in text  # the shoe size: never echoed
    assert "hanako" not in text  # an unknown key is not named: it may be personal data
    csv_resp = await live.api.call(
        "GET", f"/v1/jobs/{job['job_id']}/rejections?format=csv", Role.SENDER
    )
    assert (await csv_resp.text()).startswith("line,subject_id,code,field,message")


async def test_streamed_csv_with_a_broken_line(live: Live) -> None:
    await grant(live, "cust-1", "cust-3")
    body = (
        "subject_id,email,phone\r\n"
        "cust-1,one@example.com,\r\n"
        'cust-2,"broken,\r\n'
        "cust-3,three@example.com,+81 90 1234 5678\r\n"
    )
    query = "&".join(f"{k}={v}" for k, v in {**PARAMS, "idempotency_key": "k-csv"}.items())
    resp = await live.api.call(
        "POST",
        f"/v1/provisions/customer-match?{query}",
        Role.SENDER,
        data=body,
        headers={"Content-Type": "text/csv"},
    )
    assert resp.status == 202, await resp.text()
    job = await resp.json()
    assert job["counts"] == {**job["counts"], "received": 3, "allowed": 2, "invalid": 1}
    await settled(live, job["job_id"])
    assert sum(live.sandbox.member_counts("ingest").values()) == 2


async def test_faults_are_retried_until_delivered_once(live: Live) -> None:
    subjects = [f"cust-{n}" for n in range(30)]
    await grant(live, *subjects)
    live.sandbox.set_faults(
        "google-datamanager",
        FaultPlan(
            rate=0.3,
            kinds=("429", "500", "503", "timeout", "drop"),
            retry_after=0.05,
            timeout_s=0.2,
            first_n=2,
        ),
    )
    jobs = [await upload(live, [record(n)], f"k-f{n}") for n in range(30)]
    for job in jobs:
        assert (await settled(live, job["job_id"]))["state"] == "done"
    members = live.sandbox.member_counts("ingest")
    assert sum(members.values()) == 30
    assert set(members.values()) == {1}
    stats = live.sandbox.stats()["google-datamanager"]
    assert stats["requests"] > 30  # faults happened...
    assert sum(stats["faults"].values()) == stats["requests"] - stats["accepted"]
    assert stats["accepted"] == 30  # ...and every batch was accepted once


async def test_retry_after_is_respected(live: Live) -> None:
    await grant(live, "cust-1")
    live.sandbox.set_faults(
        "google-datamanager", FaultPlan(kinds=("429",), retry_after=1.0, first_n=1)
    )
    started = asyncio.get_running_loop().time()
    job = await upload(live, [record(1)], "k-ra")
    await settled(live, job["job_id"])
    # The fast test policy would retry after ~10 ms; the partner asked for a second.
    assert asyncio.get_running_loop().time() - started >= 1.0
    assert live.sandbox.stats()["google-datamanager"]["requests"] == 2


async def test_permanent_refusal_is_a_dead_letter_with_failed_entries(live: Live) -> None:
    await grant(live, "cust-1")
    contract = live.api.services.contracts["google-customer-match"]
    broken = contract.model_copy(
        update={
            "endpoint": contract.endpoint.model_copy(
                update={"url": live.sandbox_url + "/no-such-partner"}
            )
        }
    )
    live.api.services.contracts["google-customer-match"] = broken  # type: ignore[index]
    job = await upload(live, [record(1)], "k-dead")
    done = await settled(live, job["job_id"])
    assert done["state"] == "failed"
    assert done["counts"]["failed"] == 1
    assert await outcomes(live, job["transfer_id"]) == Counter(allowed=1, failed=1)
    flt = TransferFilter(subject_id="cust-1", outcome="failed")
    assert len(await live.api.services.store.ledger_find(flt, after=-1, limit=10)) == 1


async def removed_members(live: Live, count: int) -> None:
    async with asyncio.timeout(20):
        while sum(live.sandbox.member_counts("remove").values()) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


async def test_withdrawal_removes_the_person_from_the_partner(live: Live) -> None:
    await grant(live, "cust-1", "cust-2")
    job = await upload(live, [record(1), record(2)], "k-w")
    await settled(live, job["job_id"])
    resp = await live.api.call("DELETE", "/v1/subjects/cust-1/consents/ad_customer_match")
    assert resp.status == 200
    await removed_members(live, 1)
    ingested = live.sandbox.member_counts("ingest")
    removed = live.sandbox.member_counts("remove")
    assert set(removed) <= set(ingested)  # the very member that was uploaded
    flt = TransferFilter(subject_id="cust-1")
    entries = [
        json.loads(leaf.leaf or b"{}")
        for leaf in await live.api.services.store.ledger_find(flt, after=-1, limit=100)
    ]
    removal = [(e["operation"], e["outcome"]) for e in entries if e.get("operation") == "remove"]
    async with asyncio.timeout(10):  # the worker logs the removal's delivery after the ack
        while ("remove", "delivered") not in removal:
            await asyncio.sleep(0.05)
            entries = [
                json.loads(leaf.leaf or b"{}")
                for leaf in await live.api.services.store.ledger_find(flt, after=-1, limit=100)
            ]
            removal = [
                (e["operation"], e["outcome"]) for e in entries if e.get("operation") == "remove"
            ]
    assert ("remove", "allowed") in removal
    # A second withdrawal finds nothing left to remove.
    await live.api.call("DELETE", "/v1/subjects/cust-1/consents/ad_customer_match")
    await asyncio.sleep(0.3)
    assert sum(live.sandbox.member_counts("remove").values()) == 1
    report = await live.api.call("GET", "/v1/subjects/cust-1/disclosures", Role.COMPLIANCE)
    statuses = [p["status"] for p in (await report.json())["provisions"]]
    assert "removed" in statuses


async def test_discontinuance_removes_from_the_partners_it_names(live: Live) -> None:
    await grant(live, "cust-5")
    job = await upload(live, [record(5)], "k-d")
    await settled(live, job["job_id"])
    resp = await live.api.call(
        "POST",
        "/v1/subjects/cust-5/discontinuance",
        json={"partners": ["google-customer-match"], "reason": "asked us to stop"},
    )
    assert resp.status == 201, await resp.text()
    await removed_members(live, 1)


async def test_a_withdrawal_by_bulk_import_removes_too(live: Live) -> None:
    await grant(live, "cust-7")
    job = await upload(live, [record(7)], "k-imp")
    await settled(live, job["job_id"])
    line = (
        '{"subject_id": "cust-7", "purpose": "ad_customer_match", "action": "withdraw", '
        '"withdrawn_at": "2026-11-01T00:00:00Z"}\n'
    )
    resp = await live.api.call(
        "POST",
        "/v1/consents/import",
        data=line,
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["withdrawn"] == 1
    await removed_members(live, 1)


async def test_a_withdrawal_dated_before_the_current_grant_removes_nothing(live: Live) -> None:
    """The person's state is the latest effective event: a backdated withdrawal filed after a
    later grant does not stop provision, so the partner keeps the person."""
    await grant(live, "cust-8")  # obtained 2026-04-01
    job = await upload(live, [record(8)], "k-backdated")
    await settled(live, job["job_id"])
    line = (
        '{"subject_id": "cust-8", "purpose": "ad_customer_match", "action": "withdraw", '
        '"withdrawn_at": "2026-03-01T00:00:00Z"}\n'
    )
    headers = {"Content-Type": "application/x-ndjson"}
    resp = await live.api.call("POST", "/v1/consents/import", data=line, headers=headers)
    assert (await resp.json())["withdrawn"] == 1  # recorded, in the history
    await asyncio.sleep(0.3)
    assert sum(live.sandbox.member_counts("remove").values()) == 0
    assert await outcomes(live, job["transfer_id"]) == Counter(allowed=1, delivered=1)


async def test_the_partner_credential_is_sent_when_one_is_stored(live: Live) -> None:
    await grant(live, "cust-9")
    ref = live.api.services.contracts["google-customer-match"].endpoint.credential_ref
    live.api.services.credentials[ref] = "token-for-google"  # type: ignore[index]
    job = await upload(live, [record(9)], "k-cred")
    await settled(live, job["job_id"])
    assert live.sandbox.stats()["google-datamanager"]["with_authorization"] == 1


def remove_batches(live: Live) -> list[MemberBatch]:
    """The remove requests the sandbox accepted, each with its members."""
    batches = live.sandbox.accepted("google-datamanager").values()
    return [b for b in batches if isinstance(b, MemberBatch) and b.operation == "remove"]


async def entries_of(live: Live, subject: str) -> list[dict[str, Any]]:
    flt = TransferFilter(subject_id=subject)
    leaves = await live.api.services.store.ledger_find(flt, after=-1, limit=1000)
    return [{**json.loads(leaf.leaf or b"{}"), "index": leaf.index} for leaf in leaves]


async def removal_entries(live: Live, subject: str, outcome: str) -> list[dict[str, Any]]:
    """The person's `remove` entries with `outcome`, once every removal queued is delivered."""
    async with asyncio.timeout(20):
        while True:
            entries = [e for e in await entries_of(live, subject) if e.get("operation") == "remove"]
            allowed = [e for e in entries if e["outcome"] == "allowed"]
            delivered = [e for e in entries if e["outcome"] == "delivered"]
            if allowed and len(delivered) == len(allowed):
                return [e for e in entries if e["outcome"] == outcome]
            await asyncio.sleep(0.05)


def delivered_ingests(entries: list[dict[str, Any]]) -> list[int]:
    return [
        e["index"] for e in entries if (e.get("operation"), e["outcome"]) == ("ingest", "delivered")
    ]


async def requests_seen(live: Live, count: int) -> None:
    async with asyncio.timeout(10):
        while live.sandbox.stats()["google-datamanager"]["requests"] < count:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_an_ingest_delivered_after_the_withdrawal_is_removed_too(live: Live) -> None:
    """APPI Art. 35: the withdrawal finds only what was delivered; an upload still retrying
    then is removed once it reaches the partner, and the earlier one is not removed twice."""
    await grant(live, "cust-1", "cust-2")
    first = await upload(live, [record(1)], "k-before")
    await settled(live, first["job_id"])
    live.sandbox.set_faults(
        "google-datamanager", FaultPlan(rate=1.0, kinds=("503",), retry_after=0.5)
    )
    pending = await upload(live, [record(1), record(2)], "k-pending")
    await requests_seen(live, 2)  # the second upload was refused once: it is retrying
    resp = await live.api.call("DELETE", "/v1/subjects/cust-1/consents/ad_customer_match")
    assert resp.status == 200
    live.sandbox.clear_faults()
    assert (await settled(live, pending["job_id"]))["state"] == "done"
    await removed_members(live, 2)  # the check after the delivery runs once it is logged
    removals = await removal_entries(live, "cust-1", "allowed")
    # one removal per delivered ingest, each referring to its own: none missed, none twice
    delivered = delivered_ingests(await entries_of(live, "cust-1"))
    assert len(delivered) == 2
    assert sorted(e["refers_to"] for e in removals) == delivered
    assert {e["reasons"][0]["code"] for e in removals} == {"consent_withdrawn"}
    removed = live.sandbox.member_counts("remove")
    ingested = live.sandbox.member_counts("ingest")
    assert removed == dict.fromkeys(removed, 2)  # cust-1's member, by each removal
    assert len(removed) == 1
    assert set(removed) <= set(ingested)
    assert not [e for e in await entries_of(live, "cust-2") if e.get("operation") == "remove"]


async def test_a_dead_letter_replayed_after_the_withdrawal_is_removed_too(live: Live) -> None:
    await grant(live, "cust-3")
    live.sandbox.set_faults("google-datamanager", FaultPlan(rate=1.0, kinds=("500",)))
    job = await upload(live, [record(3)], "k-dead-then-replayed")
    assert (await settled(live, job["job_id"]))["state"] == "failed"
    resp = await live.api.call("DELETE", "/v1/subjects/cust-3/consents/ad_customer_match")
    assert resp.status == 200
    live.sandbox.clear_faults()
    store = live.api.services.store
    dead = [row.delivery_id for row in await store.deliveries_of_transfer(job["transfer_id"])]
    assert await store.replay_dead(dead, live.api.services.clock()) == 1  # `outbox replay`
    await removed_members(live, 1)
    removals = await removal_entries(live, "cust-3", "allowed")
    assert [e["refers_to"] for e in removals] == delivered_ingests(await entries_of(live, "cust-3"))
    assert sum(live.sandbox.member_counts("remove").values()) == 1


async def test_an_ingest_delivered_after_a_discontinuance_is_removed_too(live: Live) -> None:
    await grant(live, "cust-4")
    live.sandbox.set_faults(
        "google-datamanager", FaultPlan(rate=1.0, kinds=("503",), retry_after=0.5)
    )
    job = await upload(live, [record(4)], "k-discontinued")
    await requests_seen(live, 1)
    resp = await live.api.call(
        "POST",
        "/v1/subjects/cust-4/discontinuance",
        json={"partners": ["google-customer-match"], "reason": "asked us to stop"},
    )
    assert resp.status == 201, await resp.text()
    live.sandbox.clear_faults()
    await settled(live, job["job_id"])
    removals = await removal_entries(live, "cust-4", "allowed")
    assert [e["reasons"][0]["code"] for e in removals] == ["discontinuance"]
    assert [e["refers_to"] for e in removals] == delivered_ingests(await entries_of(live, "cust-4"))


async def test_a_person_delivered_several_times_is_removed_in_one_request(live: Live) -> None:
    """One remove request carries the person's members once each; the log keeps one removal
    per delivered ingest, each referring to it, and logs each one's delivery."""
    await grant(live, "cust-6", "cust-8")
    for n, email in enumerate(["six@example.com", "six@example.com", "six.new@example.com"]):
        records = [{"subject_id": "cust-6", "email": email}, record(8)]
        await settled(live, (await upload(live, records, f"k-six-{n}"))["job_id"])
    resp = await live.api.call("DELETE", "/v1/subjects/cust-6/consents/ad_customer_match")
    assert resp.status == 200
    removals = await removal_entries(live, "cust-6", "allowed")
    delivered = delivered_ingests(await entries_of(live, "cust-6"))
    assert len(delivered) == 3
    assert sorted(e["refers_to"] for e in removals) == delivered
    assert len({e["transfer_id"] for e in removals}) == 1
    assert len({e["delivery_id"] for e in removals}) == 1
    (batch,) = remove_batches(live)  # one request...
    assert batch.count == 2  # ...with the two members sent, each once
    assert set(batch.digests()) <= set(live.sandbox.member_counts("ingest"))
    outcomes_of_removal = await removal_entries(live, "cust-6", "delivered")
    assert sorted(e["refers_to"] for e in outcomes_of_removal) == sorted(
        e["index"] for e in removals
    )
    report = await live.api.call("GET", "/v1/subjects/cust-6/disclosures", Role.COMPLIANCE)
    assert [p["status"] for p in (await report.json())["provisions"]] == ["removed"] * 3
    assert not [e for e in await entries_of(live, "cust-8") if e.get("operation") == "remove"]


async def test_removals_queued_at_once_never_remove_an_entry_twice(live: Live) -> None:
    """A withdrawal and the worker's check after a delivery may look at the same person at
    the same moment: the second must see what the first queued."""
    await grant(live, "cust-5")
    await settled(live, (await upload(live, [record(5)], "k-twice"))["job_id"])
    removals = live.api.services.removals
    queued = await asyncio.gather(
        *(
            removals.remove("cust-5", purpose=None, partners=None, why="discontinuance")
            for _ in range(3)
        )
    )
    assert sorted(queued) == [0, 0, 1]
    removals_logged = [
        e for e in await entries_of(live, "cust-5") if e.get("operation") == "remove"
    ]
    assert len(removals_logged) == 1
