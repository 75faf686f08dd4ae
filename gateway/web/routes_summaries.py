"""Statistical summaries from attribute-estimation recipients.

`POST /v1/partners/{partner_id}/summaries` is the recipient's own door (role recipient, a
client minted for that one partner): the gateway keeps a summary only if it is an aggregate
table whose every cell counts at least the contract's `[statistics] min_cell_count` and that
carries no per-person key (gateway.provisions.summaries). Either way the outcome is logged:
a `received` entry for a stored summary, a `denied` one (reasons, never values) for a refused
one, which is answered 422 with every problem as a JSON pointer (400 when the body is not
JSON; 413 and 415 when it is refused unread, logged too, with no body hash). `GET` lists what
was kept (senders for their partners, compliance for all). Requests that are not the
partner's recipient's (401, 403) or name no such partner (404) are not receipts: not logged.

The check is CPU-bound (tens of microseconds a cell, MAX_CELLS cells at most), so it runs in a
worker thread: a large summary does not hold the event loop that fraud checks share.

Order of writes: the log entry first, then the row. A crash between the two leaves a logged
receipt with nothing stored, and the recipient's retry logs it again; never a stored summary
that the log does not show. One summary per (partner, upload id): the same body again is
answered 200 with the stored one and logged no second time; another body is a conflict.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from typing import Any, Final

from aiohttp import web

from gateway.adapters import SummaryRefused
from gateway.adapters.attribute_export import MAX_CELLS, Problem, Summary, check_summary
from gateway.contract_kinds import identifier_fields
from gateway.contracts import PartnerContract, Statistics
from gateway.errors import (
    BadRequest,
    Conflict,
    FieldError,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from gateway.models import PartnerKind, Role
from gateway.provisions.summaries import receipt_record, refusal_record
from gateway.storage.summary_store import SummaryRecord
from gateway.web.auth import require_partner
from gateway.web.endpoints import Caller, Endpoint, QueryParam
from gateway.web.problems import json_response, require_media
from gateway.web.routes_ledger import parse_count
from gateway.web.services import SERVICES, Services

POSTERS: Final = frozenset({Role.RECIPIENT})
READERS: Final = frozenset({Role.SENDER, Role.COMPLIANCE})
PAGE_DEFAULT: Final = 100
PAGE_MAX: Final = 1_000
# A MAX_CELLS table of a few dimensions is about 1 MB of JSON. json.loads holds the GIL even
# in a worker thread (~15 ms a MiB here), so the body is bounded too, well below the app's
# 16 MiB default: a 4 MiB body holds the loop ~60-150 ms, a 16 MiB one ~0.5 s (measured).
MAX_SUMMARY_BYTES: Final = 4 * 1024 * 1024
_UNREAD_MEDIA: Final = "not read: the body is not application/json"
_UNREAD_TOO_LARGE: Final = "not read: the body is larger than the gateway accepts"


def _contract(services: Services, partner_id: str) -> PartnerContract:
    """The partner's contract if it returns summaries. Raises NotFound."""
    contract = services.contracts.get(partner_id)
    if contract is None or contract.kind is not PartnerKind.ATTRIBUTE_EXPORT:
        raise NotFound(f"no attribute-estimation partner {partner_id!r}")
    return contract


def _verdict(
    raw: bytes, statistics: Statistics, identifiers: frozenset[str]
) -> tuple[str, Summary | SummaryRefused | None]:
    """(SHA-256 of the body, its verdict: the Summary, the refusal, or None when the body is
    not JSON). Pure and CPU-bound (a MAX_CELLS summary takes a few hundred ms): run off the
    event loop, so fraud checks and /healthz are not held up behind it."""
    sha = hashlib.sha256(raw).hexdigest()
    try:
        body = json.loads(raw)  # bytes: UTF-8/16/32 per RFC 8259 §8.1; ValueError otherwise
    except (ValueError, RecursionError):  # the message may quote the input: not kept
        return sha, None
    try:
        minimum, allowed = statistics.min_cell_count, statistics.dimensions
        return sha, check_summary(body, minimum, identifiers, allowed)
    except SummaryRefused as exc:
        return sha, exc


async def _body(request: web.Request) -> bytes:
    """The body, if it is JSON of at most MAX_SUMMARY_BYTES (or the app's smaller limit).
    Raises UnsupportedMediaType, PayloadTooLarge."""
    require_media(request, ("application/json",))
    limit = min(MAX_SUMMARY_BYTES, request.app[SERVICES].settings.max_json_bytes)
    declared = request.content_length
    if declared is not None and declared > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:  # chunked, or a Content-Length that understated it
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"a summary is at most {limit} bytes (and {MAX_CELLS} cells); it was not read, and "
        "the refusal is logged"
    )


async def post_summary(request: web.Request, caller: Caller) -> web.StreamResponse:
    services = request.app[SERVICES]
    partner_id = request.match_info["partner_id"]
    require_partner(caller.client, partner_id)
    assert caller.client is not None
    contract = _contract(services, partner_id)
    try:
        raw = await _body(request)
    except (UnsupportedMediaType, PayloadTooLarge) as exc:
        # Refused unread: logged like any refusal, with no body hash (nothing was read whole).
        unread = _UNREAD_TOO_LARGE if isinstance(exc, PayloadTooLarge) else _UNREAD_MEDIA
        await _refused(services, contract, [("", unread)], None)
        raise
    assert contract.statistics is not None, "required for kind attribute_export"
    identifiers = identifier_fields(contract)
    sha, verdict = await asyncio.to_thread(_verdict, raw, contract.statistics, identifiers)
    if verdict is None:
        await _refused(services, contract, [("", "not a JSON document")], sha)
        raise BadRequest("the summary is not valid JSON; it was refused and logged")
    if isinstance(verdict, SummaryRefused):
        await _refused(services, contract, verdict.problems, sha)
        raise ValidationFailed(
            f"the summary was refused ({len(verdict.problems)} problem(s)): only aggregate "
            f"cells (at most {MAX_CELLS}) of at least the contract's minimum count, with no "
            "per-person key and only the dimensions it allows, are accepted; the refusal is "
            "logged",
            errors=[FieldError(where, detail) for where, detail in verdict.problems],
        )
    existing = await services.store.summary_of_upload(partner_id, verdict.upload_id)
    if existing is not None:
        return _again(existing, sha)
    stored, created = await _keep(services, contract, verdict, caller.client.client_id, sha)
    if not created:  # another request stored this upload's summary meanwhile
        return _again(stored, sha)
    return json_response(_created(stored), status=201)


async def _keep(
    services: Services, contract: PartnerContract, summary: Summary, client_id: str, sha: str
) -> tuple[SummaryRecord, bool]:
    """Log the receipt, then store the summary. Raises StorageError."""
    summary_id, entry_id, now = services.new_id(), services.new_id(), services.clock()
    record = receipt_record(
        contract=contract,
        summary=summary,
        summary_id=summary_id,
        entry_id=entry_id,
        body_sha256=sha,
        time=now,
    )
    await services.ledger.append([record])
    row = SummaryRecord(
        summary_id=summary_id,
        partner_id=contract.id,
        upload_id=summary.upload_id,
        client_id=client_id,
        dimensions=summary.dimensions,
        cells=len(summary.cells),
        body=summary.model_dump_json(),
        body_sha256=sha,
        entry_id=entry_id,
        received_at=now,
    )
    return await services.store.insert_summary(row)


async def _refused(
    services: Services, contract: PartnerContract, problems: Sequence[Problem], sha: str | None
) -> None:
    """Log a refusal. Raises StorageError."""
    record = refusal_record(
        contract=contract,
        problems=problems,
        transfer_id=services.new_id(),
        entry_id=services.new_id(),
        body_sha256=sha,
        time=services.clock(),
    )
    await services.ledger.append([record])


def _again(stored: SummaryRecord, sha: str) -> web.Response:
    """A second summary for a stored upload: the same bytes are a retry (200, nothing new
    logged); other bytes are refused. Raises Conflict."""
    if stored.body_sha256 != sha:
        raise Conflict(
            "this upload already has a summary",
            errors=[FieldError("/upload_id", "a summary of this upload is stored already")],
        )
    return json_response(_created(stored))


def _created(stored: SummaryRecord) -> dict[str, Any]:
    return {"summary_id": stored.summary_id, "upload_id": stored.upload_id, "cells": stored.cells}


def _view(stored: SummaryRecord) -> dict[str, Any]:
    body = json.loads(stored.body)
    return {
        "seq": stored.seq,
        "summary_id": stored.summary_id,
        "upload_id": stored.upload_id,
        "received_at": stored.received_at.isoformat(),
        "client_id": stored.client_id,
        "body_sha256": stored.body_sha256,
        "entry_id": stored.entry_id,
        "dimensions": list(stored.dimensions),
        "cells": body["cells"],
    }


def _page(request: web.Request) -> tuple[int, int]:
    """(after, limit) from the query. Raises ValidationFailed."""
    errors = []
    values = {}
    for name, default, low, high in (("after", 0, 0, 2**62), ("limit", PAGE_DEFAULT, 1, PAGE_MAX)):
        value = parse_count(request.query.get(name, str(default)))
        if value is None or not low <= value <= high:
            errors.append(FieldError.query(name, f"an integer from {low} to {high}"))
            continue
        values[name] = value
    if errors:
        raise ValidationFailed("invalid paging parameters", errors=errors)
    return values["after"], values["limit"]


async def get_summaries(request: web.Request, caller: Caller) -> web.StreamResponse:
    services = request.app[SERVICES]
    partner_id = request.match_info["partner_id"]
    require_partner(caller.client, partner_id)
    _contract(services, partner_id)
    after, limit = _page(request)
    found = await services.store.partner_summaries(partner_id, after_seq=after, limit=limit)
    out: dict[str, Any] = {"partner": partner_id, "summaries": [_view(s) for s in found]}
    if len(found) == limit:
        out["next"] = f"/v1/partners/{partner_id}/summaries?after={found[-1].seq}&limit={limit}"
    return json_response(out)


ENDPOINTS = [
    Endpoint(
        method="POST",
        path="/v1/partners/{partner_id}/summaries",
        handler=post_summary,
        summary="A recipient posts the statistical summary of an attribute-estimation upload",
        description=(
            "The recipient's own credential (role recipient, for this partner only). The "
            "summary is stored only if it is an aggregate table: upload_id, dimensions and "
            "cells of {values, count}, every count at least the contract's min_cell_count, no "
            "dimension or value that keys one person, nothing else. Answers 201 with "
            "summary_id, upload_id and the number of cells, and logs the receipt. Anything "
            "else is refused with 422 listing every problem as a JSON pointer (a key the "
            f"summary does not declare is counted, never named; at most {MAX_CELLS} cells), "
            "and the refusal is logged (never the content); so are 400 (not JSON), 413 and "
            "415. The same summary again answers 200; another summary of the same upload is "
            "409. A recipient only for its own partner."
        ),
        tag="partners",
        roles=POSTERS,
        partner_scoped=True,
        request_model=Summary,
        response_status=201,
        also={200: "The same summary again: the stored one (logged no second time)."},
        errors=frozenset({409}),  # another summary of the same upload
        example_path={"partner_id": "sample-point-program"},
        example_body={
            "upload_id": "up_0123456789abcdef",
            "dimensions": ["age_band", "gender"],
            "cells": [
                {"values": {"age_band": "30-39", "gender": "f"}, "count": 12},
                {"values": {"age_band": "40-49", "gender": "m"}, "count": 15},
            ],
        },
    ),
    Endpoint(
        method="GET",
        path="/v1/partners/{partner_id}/summaries",
        handler=get_summaries,
        summary="The statistical summaries a recipient posted and the gateway kept",
        description="Oldest first, paged by seq (`after`, `limit`); `next` when more may follow.",
        tag="partners",
        roles=READERS,
        partner_scoped=True,
        query=(
            QueryParam("after", "only summaries with seq above this (default 0)"),
            QueryParam("limit", f"at most this many (1-{PAGE_MAX}, default {PAGE_DEFAULT})"),
        ),
        example_path={"partner_id": "sample-point-program"},
    ),
]
