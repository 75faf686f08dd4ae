"""Transfers for compliance staff: filtered, paginated or streamed (CSV, JSONL); one transfer
with inclusion proofs anyone can check; and a person's APPI Art. 33(5) disclosure report."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.errors import FieldError, NotFound, ValidationFailed
from gateway.ledger.entries import Outcome
from gateway.ledger.store import StoredLeaf
from gateway.ledger.transfer_filter import TransferFilter
from gateway.models import LegalBasis, Role
from gateway.web.endpoints import Caller, Endpoint, QueryParam
from gateway.web.problems import json_response
from gateway.web.routes_consent import subject_id_of
from gateway.web.routes_ledger import COUNT_SCHEMA, b64, int_param
from gateway.web.services import SERVICES, Services

COMPLIANCE = frozenset({Role.COMPLIANCE})
PAGE_DEFAULT, PAGE_MAX, STREAM_PAGE = 100, 1000, 5000
# The CSV form carries what the JSONL form does, one column per field of every kind of entry
# (provision, outcome, removal, receipt), flattened by one rule: an object whose members the
# entry schema fixes becomes one column per member, `<object>_<member>`; a list or an object
# whose members vary (evidence, received) is one cell of compact JSON; a field outside the
# schema goes, with its value, into the JSON object of the last column, `extra`, so none is
# ever dropped. Cells: strings as they are, true/false, numbers in decimal, null (or absent)
# as an empty cell.
_CSV_FIELDS: tuple[tuple[str, ...], ...] = (
    ("index",), ("schema",), ("entry_id",), ("transfer_id",), ("time",), ("outcome",),
    ("operation",), ("delivery_id",), ("refers_to",),
    ("partner", "id"), ("partner", "name"), ("partner", "address"),
    ("partner", "representative"), ("partner", "country"),
    ("purpose",), ("legal_basis",), ("cross_border_basis",), ("data_category",), ("exempt",),
    ("subject", "id"), ("subject", "key"),
    ("items",), ("fields_dropped",), ("payload_sha256",), ("rule_ids",), ("reasons",),
    ("evidence",), ("received",),
    ("recording", "method"), ("recording", "retain_until"),
)  # fmt: skip
CSV_COLUMNS = (*("_".join(path) for path in _CSV_FIELDS), "extra")


def _choice(request: web.Request, name: str, allowed: set[str]) -> str | None:
    value = request.query.get(name)
    if value is not None and value not in allowed:
        detail = f"one of: {', '.join(sorted(allowed))}"
        raise ValidationFailed(f"{name} is not valid", errors=[FieldError.query(name, detail)])
    return value


# RFC 3339 §5.6 date-time, ASCII digits only ("T" and "Z" may be lower case, §5.6 NOTE).
# fromisoformat alone also takes ISO 8601's basic format (20260101T000000Z), week dates and
# times without seconds: one spelling per form the docs promise, nothing else.
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def parse_rfc3339(raw: str) -> datetime | None:
    """An RFC 3339 timestamp (with its offset), or None for anything else, including
    out-of-range fields and leap seconds (Python's datetime has no 23:59:60)."""
    if _RFC3339.fullmatch(raw) is None:
        return None
    try:
        return datetime.fromisoformat(raw.upper())
    except ValueError:
        return None


def _instant(request: web.Request, name: str) -> datetime | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    at = parse_rfc3339(raw)
    if at is None:
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


def csv_cell(value: Any) -> str:
    """One CSV cell: see _CSV_FIELDS."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def csv_row(entry: dict[str, Any]) -> list[str]:
    """The CSV cells of an entry (as `entry_of` gives it), in CSV_COLUMNS order."""
    rest = {k: dict(v) if isinstance(v, dict) else v for k, v in entry.items()}
    cells = []
    for path in _CSV_FIELDS:
        if len(path) == 1:
            value = rest.pop(path[0], None)
        else:
            parent = rest.get(path[0])
            value = parent.pop(path[1], None) if isinstance(parent, dict) else None
        cells.append(csv_cell(value))
    extra = {k: v for k, v in rest.items() if v is not None and v != {}}
    cells.append(csv_cell(extra or None))
    return cells


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
    """The cursor (-1 before the first page) and the page size. Raises ValidationFailed
    naming the parameter that is wrong."""
    after = int_param(request, "cursor", default=-1)
    limit = int_param(request, "limit", default=PAGE_DEFAULT)
    if not 1 <= limit <= PAGE_MAX:
        raise ValidationFailed(
            f"limit must be 1 to {PAGE_MAX}",
            errors=[FieldError.query("limit", f"1 to {PAGE_MAX}")],
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
REMOVE = "remove"  # the operation of a removal from the partner's list (APPI Art. 35)


def _provision_item(e: dict[str, Any]) -> dict[str, Any]:
    """A report item from a provision entry; from an outcome whose provision entry is no
    longer in the log (past its retention), with what the outcome holds and null for the
    rest (a removal's transfer is its own, not the provision's)."""
    own = "refers_to" not in e
    removal = e.get("operation") == REMOVE  # only a delivered provision is ever removed
    return {
        "transfer_id": None if removal else e["transfer_id"],
        "date": e["time"] if own else None,
        "recipient": e["partner"],
        "purpose": e["purpose"],
        "items": [i["field"] for i in e.get("items", ())] if own else None,
        "legal_basis": e["legal_basis"],
        "cross_border_basis": e.get("cross_border_basis"),
        "exempt": e.get("exempt"),
        "status": Outcome.DELIVERED.value if removal else e["outcome"],
        "status_date": None if removal else e["time"],
        "removal": None,
    }


def _apply(item: dict[str, Any], e: dict[str, Any]) -> None:
    """Entries come in log order: the last outcome stands. A removal is the provision's own
    state: the partner held the data until it acknowledged the removal."""
    if e.get("operation") != REMOVE:
        item["status"], item["status_date"] = e["outcome"], e["time"]
        return
    removal = item["removal"]
    if removal is None or removal["transfer_id"] != e["transfer_id"]:
        removal = item["removal"] = {"transfer_id": e["transfer_id"], "date": e["time"]}
    removal["outcome"], removal["outcome_date"] = e["outcome"], e["time"]
    if e["outcome"] == Outcome.DELIVERED.value:
        item["status"], item["status_date"] = "removed", e["time"]


def _provision_key(e: dict[str, Any], belongs: dict[int, str]) -> str:
    """Which provision an entry is about: its own transfer for a provision entry; for an
    outcome, that of the entry it refers to ("@index" when that one is no longer in the log)."""
    refers = e.get("refers_to")
    if not isinstance(refers, int):
        return str(e["transfer_id"])
    return belongs.get(refers, f"@{refers}")


def disclosure_report(subject_id: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Art. 33(5): the records of provision about one person, in log order, in a
    machine-readable form: one item per provision (per transfer), with recipient, date, items,
    bases, its `status` now and since when (`status_date`), and `removal` once a removal from
    the partner was queued (APPI Art. 35); plus what came back about them (Art. 30).

    Outcome entries (delivered, failed) and removals carry no items of their own: each is
    folded into the provision it refers to, following `refers_to` (a removal refers to the
    delivery outcome, that one to the provision entry), never listed as a provision itself.
    """
    provisions: dict[str, dict[str, Any]] = {}
    belongs: dict[int, str] = {}  # log index -> key of the provision the entry is about
    received = []
    for e in entries:
        if e["outcome"] == Outcome.RECEIVED.value:
            received.append(
                {"date": e["time"], "provider": e["partner"], "purpose": e["purpose"],
                 "items": [i["field"] for i in e["items"]], "transfer_id": e["transfer_id"]}
            )  # fmt: skip
        elif e["outcome"] in PROVIDED:
            key = belongs[e["index"]] = _provision_key(e, belongs)
            if key not in provisions:
                provisions[key] = _provision_item(e)
            _apply(provisions[key], e)
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
    QueryParam("since", "RFC 3339 date-time with offset, e.g. 2026-11-01T00:00:00Z; inclusive"),
    QueryParam("until", "RFC 3339 date-time with offset; exclusive"),
    QueryParam("format", "json (paginated, default), jsonl or csv (streamed, every match)"),
    QueryParam("cursor", "next_cursor of the previous page", COUNT_SCHEMA),
    QueryParam("limit", f"page size, 1 to {PAGE_MAX} (default {PAGE_DEFAULT})", COUNT_SCHEMA),
)
_TRANSFERS = (
    "Integers are ASCII decimal without sign or leading zero. The CSV form has a column for "
    "every field of the JSONL form: members of partner, subject and recording as "
    "<object>_<member>; lists, evidence and received as compact JSON; true/false; an empty "
    "cell for null; any other field in the JSON object of the last column, extra."
)
_DISCLOSURES = (
    "One item per provision (transfer): recipient, date, items, legal_basis, "
    "cross_border_basis, exempt; status (allowed, delivered, failed, or removed once the "
    "partner acknowledged a removal after a withdrawal or discontinuance, APPI Art. 35) and "
    "status_date; removal: null, or the removal's transfer_id, date, outcome (allowed: "
    "queued; delivered; failed) and outcome_date. Outcomes and removals are folded into the "
    "provision they refer to. An item whose own provision entry is past retention has null "
    "date and items. received: what came back about the person (Art. 30)."
)
ENDPOINTS = [
    Endpoint(
        method="GET",
        path="/v1/transfers",
        handler=get_transfers,
        tag="transfers",
        summary="Log entries by subject, partner, purpose, basis, outcome and time",
        description=_TRANSFERS,
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
        description=_DISCLOSURES,
        roles=COMPLIANCE,
        example_path={"subject_id": "member-000123"},
    ),
]
