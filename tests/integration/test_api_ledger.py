"""The transfer log over HTTP, checked the way an outside auditor would: verifier key, signed
checkpoints, entries, RFC 9162 proofs, transfer receipts, filters and the Art. 33(5) report."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
from datetime import datetime
from typing import Any

import pytest

from gateway.ledger.checkpoint import open_note
from gateway.ledger.entries import to_record
from gateway.ledger.tree import leaf_hash, verify_consistency, verify_inclusion
from gateway.models import ConsentAction, ConsentEvent, Role, SubjectState
from gateway.web import routes_ledger
from tests.integration.conftest import NOW, Api, Live
from tests.integration.ledger_fixtures import record_transfer
from tests.integration.lifecycle_entries import lifecycle
from tests.integration.test_customer_match import grant, record, removed_members, settled, upload

GOOGLE = "google-customer-match"


def _consented(subject_id: str) -> SubjectState:
    grant = ConsentEvent(
        subject_id=subject_id,
        purpose="ad_customer_match",
        action=ConsentAction.GRANT,
        effective_at=datetime(2026, 4, 1, tzinfo=NOW.tzinfo),
        notice_version="n1",
        channel="web",
        foreign_disclosure_version="us-google-2025-04",
        recorded_at=NOW,
        recorded_by="test",
    )
    return SubjectState(subject_id=subject_id, consents={"ad_customer_match": grant})


async def _seed(api: Api) -> list[str]:
    contract = api.services.contracts[GOOGLE]
    people = [_consented("m-1"), SubjectState(subject_id="m-2"), _consented("m-3")]
    ids = [await record_transfer(api.services.ledger, contract, people, now=NOW)]
    ids.append(await record_transfer(api.services.ledger, contract, people[:1], now=NOW))
    return ids


async def _text(api: Api, method: str, path: str) -> str:
    resp = await api.call(method, path, role=Role.COMPLIANCE)
    assert resp.status == 200, await resp.text()
    return await resp.text()


async def _json(api: Api, path: str) -> Any:
    return json.loads(await _text(api, "GET", path))


def _b64(s: str) -> bytes:
    return base64.b64decode(s)


async def test_checkpoints_verify_under_the_published_key(api: Api) -> None:
    await _seed(api)
    vkey = (await _text(api, "GET", "/v1/ledger/key")).strip()
    note = await _text(api, "POST", "/v1/ledger/checkpoint")
    checkpoint = open_note(note, vkey, origin=api.services.settings.log_origin)
    assert checkpoint.size == 4
    assert await _text(api, "GET", "/v1/ledger/checkpoint") == note


async def test_every_entry_is_provably_in_the_tree(api: Api) -> None:
    await _seed(api)
    vkey = (await _text(api, "GET", "/v1/ledger/key")).strip()
    first = open_note(await _text(api, "POST", "/v1/ledger/checkpoint"), vkey)
    await record_transfer(
        api.services.ledger, api.services.contracts[GOOGLE], [_consented("m-4")], now=NOW
    )
    second = open_note(await _text(api, "POST", "/v1/ledger/checkpoint"), vkey)
    page = await _json(api, f"/v1/ledger/entries?start=0&end={second.size}")
    assert [e["index"] for e in page["entries"]] == list(range(second.size))
    for entry in page["entries"]:
        leaf = _b64(entry["leaf"])
        assert leaf_hash(leaf) == _b64(entry["leaf_hash"])
        proof = await _json(
            api, f"/v1/ledger/proofs/inclusion?index={entry['index']}&size={second.size}"
        )
        hashes = [_b64(h) for h in proof["hashes"]]
        assert verify_inclusion(leaf_hash(leaf), entry["index"], second.size, hashes, second.root)
    proof = await _json(api, f"/v1/ledger/proofs/consistency?from={first.size}&to={second.size}")
    hashes = [_b64(h) for h in proof["hashes"]]
    assert verify_consistency(first.size, second.size, hashes, first.root, second.root)


async def test_entries_pages_stop_at_the_cap_and_the_end_of_the_log(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RFC 9162 §5.6 get-entries: asking for more than a page or past the end answers the
    entries there are, from start; a client pages on from the last index it received."""
    await _seed(api)  # 4 entries
    monkeypatch.setattr(routes_ledger, "MAX_ENTRIES_PAGE", 3)
    capped = await _json(api, "/v1/ledger/entries?start=0&end=4")
    assert [e["index"] for e in capped["entries"]] == [0, 1, 2]
    rest = await _json(api, "/v1/ledger/entries?start=3&end=1000000")
    assert [e["index"] for e in rest["entries"]] == [3]
    for path, parameter in [
        ("/v1/ledger/entries?start=4&end=5", "start"),  # nothing at 4 yet
        ("/v1/ledger/entries?start=2&end=2", "end"),
    ]:
        resp = await api.call("GET", path, role=Role.COMPLIANCE)
        assert resp.status == 422, path
        body = await resp.json(content_type=None)
        assert body["errors"][0]["parameter"] == parameter, path


async def test_entries_hold_field_names_never_values(api: Api) -> None:
    await _seed(api)
    page = await _json(api, "/v1/ledger/entries?start=0&end=3")
    entries = [json.loads(_b64(e["leaf"])) for e in page["entries"]]
    allowed, denied = entries[0], entries[1]
    assert allowed["outcome"] == "allowed"
    assert allowed["items"] == [{"field": "email", "transform": "sha256"}]
    assert allowed["fields_dropped"] == ["nickname"]
    assert allowed["partner"]["name"] == "Google LLC"
    assert allowed["evidence"]["notice_version"] == "n1"
    assert allowed["recording"]["retain_until"] == "2029-11-24"
    assert denied["outcome"] == "denied"
    assert "consent_missing" in {r["code"] for r in denied["reasons"]}


async def test_a_transfer_receipt_is_checkable_by_anyone(api: Api) -> None:
    transfer_id, _ = await _seed(api)
    receipt = await _json(api, f"/v1/transfers/{transfer_id}")
    checkpoint = open_note(receipt["checkpoint"], receipt["verifier_key"])
    assert len(receipt["entries"]) == 3
    for entry in receipt["entries"]:
        proof = entry["inclusion_proof"]
        assert proof["tree_size"] == checkpoint.size
        hashes = [_b64(h) for h in proof["hashes"]]
        leaf = leaf_hash(_b64(entry["leaf"]))
        assert verify_inclusion(leaf, entry["index"], checkpoint.size, hashes, checkpoint.root)
        assert entry["entry"]["transfer_id"] == transfer_id
    resp = await api.call("GET", "/v1/transfers/unknown", role=Role.COMPLIANCE)
    assert resp.status == 404


async def test_filters_and_cursor_pagination(api: Api) -> None:
    await _seed(api)
    by_subject = await _json(api, "/v1/transfers?subject_id=m-1")
    assert [t["subject"]["id"] for t in by_subject["transfers"]] == ["m-1", "m-1"]
    denied = await _json(api, "/v1/transfers?outcome=denied")
    assert [t["subject"]["id"] for t in denied["transfers"]] == ["m-2"]
    seen, cursor = [], None
    while True:
        page = await _json(api, "/v1/transfers?limit=1" + (f"&cursor={cursor}" if cursor else ""))
        seen += [t["index"] for t in page["transfers"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [0, 1, 2, 3]
    later = await _json(api, "/v1/transfers?since=2030-01-01T00:00:00Z")
    assert later["transfers"] == []


async def test_streamed_csv_and_jsonl(api: Api) -> None:
    await _seed(api)
    rows = list(csv.DictReader(io.StringIO(await _text(api, "GET", "/v1/transfers?format=csv"))))
    assert [r["subject_id"] for r in rows] == ["m-1", "m-2", "m-3", "m-1"]
    assert json.loads(rows[0]["items"]) == [{"field": "email", "transform": "sha256"}]
    lines = (await _text(api, "GET", f"/v1/transfers?format=jsonl&partner={GOOGLE}")).splitlines()
    assert [json.loads(line)["index"] for line in lines] == [0, 1, 2, 3]


async def _seed_lifecycle(api: Api, first: int = 0) -> None:
    """m-1's provision delivered, then removed after a withdrawal, then a fraud receipt, at
    `first` (the log's size)."""
    entries = lifecycle("m-1", first)
    assert (
        await api.services.ledger.append(
            [to_record({k: v for k, v in e.items() if k != "index"}) for e in entries]
        )
        == first
    )


_NESTED = {"partner", "subject", "recording"}  # flattened as <object>_<member>
_JSON = {"items", "fields_dropped", "rule_ids", "reasons", "evidence", "received"}


def _from_csv(row: dict[str, str]) -> dict[str, Any]:
    """An entry read back from its CSV row the way docs and the header say it is written."""
    entry: dict[str, Any] = {}
    for column, cell in row.items():
        if cell == "":
            continue
        if column == "extra":
            entry.update(json.loads(cell))
        elif column in _JSON:
            entry[column] = json.loads(cell)
        elif column in ("index", "refers_to"):
            entry[column] = int(cell)
        elif column == "exempt":
            entry[column] = {"true": True, "false": False}[cell]
        elif (parent := column.split("_", 1)[0]) in _NESTED:
            entry.setdefault(parent, {})[column.split("_", 1)[1]] = cell
        else:
            entry[column] = cell
    return entry


async def test_csv_carries_every_field_of_the_jsonl_form(api: Api) -> None:
    """A removal's rows are told from an ingest's (operation, refers_to, delivery_id), and
    reading the CSV back gives the JSONL entries (a null is an empty cell)."""
    await _seed(api)
    await _seed_lifecycle(api, first=4)
    text = await _text(api, "GET", "/v1/transfers?format=csv")
    rows = list(csv.DictReader(io.StringIO(text)))
    lines = (await _text(api, "GET", "/v1/transfers?format=jsonl")).splitlines()
    entries = [json.loads(line) for line in lines]
    assert len(rows) == len(entries) == 9
    for row, entry in zip(rows, entries, strict=True):
        assert _from_csv(row) == {k: v for k, v in entry.items() if v is not None}
    assert text.splitlines()[0].endswith(",recording_method,recording_retain_until,extra")
    removal = rows[6]
    assert (removal["operation"], removal["outcome"], removal["refers_to"]) == (
        "remove", "allowed", "5"
    )  # fmt: skip
    assert removal["delivery_id"] == "d-t-remove"
    assert [r["exempt"] for r in rows[:4]] == ["false"] * 4
    assert {r["extra"] for r in rows} == {""}  # every field has its own column


async def test_disclosure_report_folds_a_removal_into_its_provision(api: Api) -> None:
    await _seed_lifecycle(api)
    report = await _json(api, "/v1/subjects/m-1/disclosures")
    (provision,) = report["provisions"]
    assert (provision["transfer_id"], provision["items"]) == ("t-ingest", ["email"])
    assert (provision["status"], provision["status_date"]) == (
        "removed", "2026-11-24T13:01:00.000000Z"
    )  # fmt: skip
    assert provision["removal"]["transfer_id"] == "t-remove"
    assert [r["provider"]["id"] for r in report["received"]] == ["sample-fraud-provider"]


async def test_a_withdrawal_shows_the_provision_removed_in_the_report(live: Live) -> None:
    """End to end over the sandbox: upload, withdraw, the removal acknowledged; the person's
    report shows the one provision as removed, and no second "provision" for the removal."""
    await grant(live, "cust-1")
    job = await upload(live, [record(1)], "k-report")
    await settled(live, job["job_id"])
    resp = await live.api.call("DELETE", "/v1/subjects/cust-1/consents/ad_customer_match")
    assert resp.status == 200, await resp.text()
    await removed_members(live, 1)
    async with asyncio.timeout(10):  # the worker logs the removal's delivery after the ack
        while True:
            resp = await live.api.call("GET", "/v1/subjects/cust-1/disclosures", Role.COMPLIANCE)
            report = await resp.json()
            if report["provisions"] and report["provisions"][0]["status"] == "removed":
                break
            await asyncio.sleep(0.05)
    (provision,) = report["provisions"]
    assert provision["transfer_id"] == job["transfer_id"]
    assert provision["items"] == ["email"]
    assert provision["cross_border_basis"] == "foreign_consent"
    removal = provision["removal"]
    assert removal["transfer_id"] != job["transfer_id"]
    assert removal["outcome"] == "delivered"
    assert provision["status_date"] == removal["outcome_date"] >= removal["date"]


async def test_disclosure_report_lists_provisions_not_refusals(api: Api) -> None:
    await _seed(api)
    report = await _json(api, "/v1/subjects/m-1/disclosures")
    assert len(report["provisions"]) == 2
    first = report["provisions"][0]
    assert first["recipient"]["name"] == "Google LLC"
    assert first["items"] == ["email"]
    assert first["legal_basis"] == "consent"
    assert (await _json(api, "/v1/subjects/m-2/disclosures"))["provisions"] == []


async def test_bad_ledger_parameters_are_422(api: Api) -> None:
    await _seed(api)  # 4 entries
    for path, parameter in [
        ("/v1/ledger/proofs/inclusion?index=9&size=4", "index"),
        ("/v1/ledger/proofs/inclusion?index=4&size=4", "index"),
        ("/v1/ledger/proofs/inclusion?index=0", "size"),
        ("/v1/ledger/proofs/inclusion?index=0&size=100000", "size"),
        ("/v1/ledger/proofs/inclusion?index=9&size=100000", "size"),
        ("/v1/ledger/proofs/consistency?from=3&to=99", "to"),
        ("/v1/ledger/proofs/consistency?from=4&to=2", "from"),
        ("/v1/ledger/entries?start=2&end=1", "end"),
        ("/v1/ledger/entries?start=%D9%A1&end=3", "start"),  # ARABIC-INDIC DIGIT ONE
        ("/v1/ledger/entries?start=%EF%BC%91&end=3", "start"),  # FULLWIDTH DIGIT ONE
        ("/v1/ledger/entries?start=0&end=%C2%B2", "end"),  # SUPERSCRIPT TWO: int() raises
        ("/v1/ledger/entries?start=0&end=" + "9" * 5000, "end"),  # over int()'s digit limit
        ("/v1/ledger/entries?start=00&end=3", "start"),  # one spelling per number
        ("/v1/ledger/entries?start=%2B1&end=3", "start"),  # +1
        ("/v1/ledger/entries?start=%201&end=3", "start"),  # " 1"
        ("/v1/ledger/entries?start=1_0&end=30", "start"),
        ("/v1/transfers?outcome=lost", "outcome"),
        ("/v1/transfers?since=yesterday", "since"),
        ("/v1/transfers?since=20260101T000000Z", "since"),  # ISO 8601 basic, not RFC 3339
        ("/v1/transfers?until=2026-01-01T00:00:00", "until"),  # no offset
        ("/v1/transfers?until=2026-01-01T00:00Z", "until"),  # no seconds
        ("/v1/transfers?since=2026-W01-1T00:00:00Z", "since"),  # week date
        ("/v1/transfers?since=%D9%A2026-01-01T00:00:00Z", "since"),
        ("/v1/transfers?limit=0", "limit"),
        ("/v1/transfers?limit=%D9%A1", "limit"),
        ("/v1/transfers?cursor=abc", "cursor"),
        ("/v1/transfers?cursor=-5", "cursor"),
        ("/v1/transfers?cursor=abc&limit=0", "cursor"),
    ]:
        resp = await api.call("GET", path, role=Role.COMPLIANCE)
        assert resp.status == 422, path
        body = await resp.json(content_type=None)
        assert body["errors"][0]["parameter"] == parameter, path


async def test_well_formed_parameters_are_accepted(api: Api) -> None:
    await _seed(api)
    for path in [
        "/v1/ledger/entries?start=0&end=99999999999999999999",
        "/v1/ledger/proofs/inclusion?index=3&size=4",
        "/v1/ledger/proofs/consistency?from=0&to=4",
        "/v1/transfers?since=2026-11-24t12:00:00z&until=2026-11-24T21:00:00.5%2B09:00",
        "/v1/transfers?cursor=0&limit=1000",
    ]:
        resp = await api.call("GET", path, role=Role.COMPLIANCE)
        assert resp.status == 200, (path, await resp.text())
    page = await _json(api, "/v1/transfers?since=2026-11-24T21:00:00%2B09:00")
    assert len(page["transfers"]) == 4  # the same instant as NOW, inclusive
    page = await _json(api, "/v1/transfers?until=2026-11-24T21:00:00%2B09:00")
    assert page["transfers"] == []
