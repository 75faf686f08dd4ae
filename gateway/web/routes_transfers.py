"""Transfers for compliance staff: filtered, paginated or streamed (CSV, JSONL); one transfer
with inclusion proofs anyone can check; and a person's APPI Art. 33(5) disclosure report."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.errors import FieldError, NotFound, ValidationFailed
from gateway.ledger.entries import Outcome
from gateway.ledger.store import StoredLeaf, TransferFilter
from gateway.models import LegalBasis, Role
from gateway.web.endpoints import Caller, Endpoint, QueryParam
from gateway.web.problems import json_response
from gateway.web.routes_consent import subject_id_of
from gateway.web.routes_ledger import b64
from gateway.web.services import SERVICES, Services

COMPLIANCE = frozenset({Role.COMPLIANCE})
PAGE_DEFAULT, PAGE_MAX, STREAM_PAGE = 100, 1000, 5000
CSV_COLUMNS = (
    "index", "entry_id", "transfer_id", "time", "outcome", "partner_id", "partner_name",
    "country", "purpose", "legal_basis", "cross_border_basis", "exempt", "subject_id",
    "subject_key", "items", "payload_sha256", "rule_ids", "reasons", "retain_until",
)  # fmt: skip


def _choice(request: web.Request, name: str, allowed: set[str]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in allowed:
        detail = f"one of: {', '.join(sorted(allowed))}"
        raise ValidationFailed(f"{name} is not valid", errors=[FieldError.query(name, detail)])
    return value


def _instant(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        at = datetime.fromisoformat(raw)
    except ValueError:
        at = None
    if at is None or at.tzinfo is None:
        detail = "an RFC 3339 timestamp with an offset, e.g. 2026-11-01T00:00:00Z"
        raise ValidationFailed(f"{name} is not valid", errors=[FieldError.query(name, detail)])
    return at


def transfer_filter(request: web.Request, services: Services) -> TransferFilter:
    """The filters from the query string. Raises ValidationFailed naming the parameter."""
    return TransferFilter(
        subject_id=request.query.get("subject_id"),
        partner_id=_choice(request, "partner", set(services.contracts)),
        purpose=_choice(request, "purpose", set(services.known_purposes)),
        legal_basis=_choice(request, "legal_basis", {b.value for b in LegalBasis}),
        outcome=_choice(request, "outcome", {o.value for o in Outcome}),
        since=_instant(request, "since"),
        until=_instant(request, "until"),
    )


def entry_of(leaf: StoredLeaf) -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(leaf.leaf or b"{}")
    return {"index": leaf.index, **entry}


def csv_row(entry: dict[str, Any]) -> list[Any]:
    partner, subject = entry.get("partner", {}), entry.get("subject", {})
    items = ";".join(f"{i['field']}:{i.get('transform', '')}" for i in entry.get("items", []))
    return [
        entry["index"], entry.get("entry_id"), entry.get("transfer_id"), entry.get("time"),
        entry.get("outcome"), partner.get("id"), partner.get("name"), partner.get("country"),
        entry.get("purpose"), entry.get("legal_basis"), entry.get("cross_border_basis"),
        entry.get("exempt"), subject.get("id"), subject.get("key"), items,
        entry.get("payload_sha256"), ";".join(entry.get("rule_ids", [])),
        ";".join(r["code"] for r in entry.get("reasons", [])),
        entry.get("recording", {}).get("retain_until"),
    ]  # fmt: skip


async def _all(services: Services, flt: TransferFilter) -> AsyncIterator[StoredLeaf]:
    after = -1
    while page := await services.store.ledger_find(flt, after=after, limit=STREAM_PAGE):
        for leaf in page:
            yield leaf
        after = page[-1].index


async def _stream(
    request: web.Request, services: Services, flt: TransferFilter, fmt: str
) -> web.StreamResponse:
    media = "text/csv" if fmt == "csv" else "application/x-ndjson"
    response = web.StreamResponse(headers={"Content-Type": f"{media}; charset=utf-8"})
    await response.prepare(request)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if fmt == "csv":
        writer.writerow(CSV_COLUMNS)
    async for leaf in _all(services, flt):
        entry = entry_of(leaf)
        if fmt == "csv":
            writer.writerow(csv_row(entry))
        else:
            buffer.write(json.dumps(entry, ensure_ascii=False) + "\n")
        if buffer.tell() > 1 << 16:
            await response.write(buffer.getvalue().encode())
            buffer.seek(0)
            buffer.truncate()
    await response.write(buffer.getvalue().encode())
    await response.write_eof()
    return response


def _page_params(request: web.Request) -> tuple[int, int]:
    try:
        after = int(request.query.get("cursor", "-1"))
        limit = int(request.query.get("limit", str(PAGE_DEFAULT)))
    except ValueError:
        after, limit = -2, 0
    if after < -1 or not 1 <= limit <= PAGE_MAX:
        raise ValidationFailed(
            "cursor must be a cursor from a previous page; limit 1 to 1000",
            errors=[FieldError.query("limit", f"1 to {PAGE_MAX}; cursor: as returned")],
        )
    return after, limit


async def get_transfers(request: web.Request, caller: Caller) -> web.StreamResponse:
    services = request.app[SERVICES]
    flt = transfer_filter(request, services)
    fmt = _choice(request, "format", {"json", "jsonl", "csv"}) or "json"
    if fmt != "json":
        return await _stream(request, services, flt, fmt)
    after, limit = _page_params(request)
    page = await services.store.ledger_find(flt, after=after, limit=limit)
    cursor = str(page[-1].index) if len(page) == limit else None
    return json_response({"transfers": [entry_of(lf) for lf in page], "next_cursor": cursor})


async def get_transfer(request: web.Request, caller: Caller) -> web.StreamResponse:
    services = request.app[SERVICES]
    transfer_id = request.match_info["transfer_id"]
    leaves = await services.store.ledger_transfer(transfer_id)
    if not leaves:
        raise NotFound(f"no transfer {transfer_id!r} in the log")
    ledger = services.ledger
    checkpoint = await ledger.latest_checkpoint()
    if checkpoint is None or checkpoint.size <= leaves[-1].index:
        checkpoint = await ledger.checkpoint()  # a receipt must be checkable right away
    entries = []
    for leaf in leaves:
        proof = await ledger.inclusion_proof(leaf.index, checkpoint.size)
        entries.append(
            {
                "index": leaf.index,
                "leaf": b64(leaf.leaf) if leaf.leaf is not None else None,
                "leaf_hash": b64(leaf.leaf_hash),
                "entry": entry_of(leaf),
                "inclusion_proof": {
                    "tree_size": checkpoint.size,
                    "hashes": [b64(h) for h in proof],
                },
            }
        )
    return json_response(
        {
            "transfer_id": transfer_id,
            "checkpoint": checkpoint.note,
            "verifier_key": ledger.verifier_key(),
            "entries": entries,
        }
    )


PROVIDED = {Outcome.ALLOWED.value, Outcome.DELIVERED.value, Outcome.FAILED.value}


def disclosure_report(subject_id: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Art. 33(5): the records of provision about one person, one item per transfer, in a
    machine-readable form: recipient, date, items, basis (and what came back, Art. 30)."""
    provisions: dict[str, dict[str, Any]] = {}
    received = []
    for e in entries:
        if e["outcome"] == Outcome.RECEIVED.value:
            received.append(
                {"date": e["time"], "provider": e["partner"], "purpose": e["purpose"],
                 "items": [i["field"] for i in e["items"]], "transfer_id": e["transfer_id"]}
            )  # fmt: skip
        elif e["outcome"] in PROVIDED:
            # Outcome entries (delivered, failed, a removal) refer to the provision entry
            # that holds items and bases: they carry no items of their own.
            item = provisions.setdefault(
                e["transfer_id"],
                {"transfer_id": e["transfer_id"], "date": e["time"], "recipient": e["partner"],
                 "purpose": e["purpose"], "items": [i["field"] for i in e.get("items", ())],
                 "legal_basis": e["legal_basis"],
                 "cross_border_basis": e.get("cross_border_basis"), "exempt": e.get("exempt")},
            )  # fmt: skip
            # Entries come in log order: the last outcome stands.
            removal = e.get("operation") == "remove"
            item["status"] = "removed" if removal and e["outcome"] == "delivered" else e["outcome"]
    return {"subject_id": subject_id, "provisions": list(provisions.values()), "received": received}


async def get_disclosures(request: web.Request, caller: Caller) -> web.StreamResponse:
    services = request.app[SERVICES]
    subject_id = subject_id_of(request)
    flt = TransferFilter(subject_id=subject_id)
    entries = [entry_of(leaf) async for leaf in _all(services, flt)]
    return json_response(disclosure_report(subject_id, entries))


FILTERS = (
    QueryParam("subject_id", "only this person"),
    QueryParam("partner", "partner id"),
    QueryParam("purpose", "purpose of use"),
    QueryParam("legal_basis", "legal basis claimed"),
    QueryParam("outcome", "allowed, denied, delivered, failed, received"),
    QueryParam("since", "RFC 3339, inclusive"),
    QueryParam("until", "RFC 3339, exclusive"),
    QueryParam("format", "json (paginated, default), jsonl or csv (streamed, every match)"),
    QueryParam("cursor", "next_cursor of the previous page"),
    QueryParam("limit", f"page size, 1 to {PAGE_MAX} (default {PAGE_DEFAULT})"),
)
ENDPOINTS = [
    Endpoint(
        method="GET",
        path="/v1/transfers",
        handler=get_transfers,
        tag="transfers",
        summary="Log entries by subject, partner, purpose, basis, outcome and time",
        roles=COMPLIANCE,
        query=FILTERS,
        example_query={"partner": "google-customer-match", "format": "json"},
    ),
    Endpoint(
        method="GET",
        path="/v1/transfers/{transfer_id}",
        handler=get_transfer,
        tag="transfers",
        summary="One transfer's entries, each with its inclusion proof against a checkpoint",
        description="A receipt anyone can check with an RFC 9162 verifier and the log's key.",
        roles=COMPLIANCE,
        example_path={"transfer_id": "no-such-transfer"},
    ),
    Endpoint(
        method="GET",
        path="/v1/subjects/{subject_id}/disclosures",
        handler=get_disclosures,
        tag="transfers",
        summary="APPI Art. 33(5): every provision about one person: recipient, date, items, basis",
        roles=COMPLIANCE,
        example_path={"subject_id": "member-000123"},
    ),
]
