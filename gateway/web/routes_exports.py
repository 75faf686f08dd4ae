"""Attribute-estimation exports (role sender, for its own partners).

`POST /v1/exports/attribute-estimation` takes the records in a JSON body (with the job's
parameters) or streamed as JSONL/CSV (parameters in the query string), like a Customer Match
upload: every record is decided, written in the recipient's designated file format and
recorded before the answer `202 Accepted`; the files go out in the background (one upload per
chunk of 10,000 records). `GET /v1/jobs/{job_id}` follows the job, `.../rejections` lists
every record not sent. See docs/exports.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Final, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.keyring import PSEUDONYMIZATION
from gateway.models import LegalBasis
from gateway.provisions.attribute_export import DEFAULT_PURPOSE, ExportPlanner
from gateway.provisions.jobs import JobRequest
from gateway.provisions.reader import read_records
from gateway.web.auth import require_partner
from gateway.web.endpoints import Caller, Endpoint, QueryParam
from gateway.web.problems import read_model, require_media
from gateway.web.routes_provisions import (
    KEY_PATTERN,
    SENDERS,
    STREAM_MEDIA,
    STREAM_MEDIA_CSV,
    accept_job,
    jobs_for,
    listed,
    named_as_parameters,
    query_job_request,
)
from gateway.web.services import SERVICES, Services

EXPORT_PARAMS: Final = ("partner", "purpose", "legal_basis")
EXPORT_DEFAULTS: Final = {"purpose": DEFAULT_PURPOSE, "legal_basis": LegalBasis.CONSENT.value}


class ExportBody(BaseModel):
    """An attribute-estimation export in one JSON body (see the streamed form for large ones)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partner: str = Field(min_length=1, max_length=63)
    purpose: str = Field(default=DEFAULT_PURPOSE, min_length=1, max_length=63)
    legal_basis: LegalBasis = LegalBasis.CONSENT
    idempotency_key: str = Field(pattern=KEY_PATTERN)
    # Objects, not a strict model: a bad record is rejected on its own, the rest go on.
    records: list[dict[str, Any]] = Field(min_length=1)


def _planner(services: Services) -> ExportPlanner:
    """Raises ConfigError when the keyring has no pseudonymization key."""
    return ExportPlanner(
        subject_key=services.subject_key,
        pseudonym_key=services.keyring.current(PSEUDONYMIZATION).material,
        new_id=services.new_id,
        default_region=services.settings.default_region,
    )


async def post_attribute_export(request: web.Request, caller: Caller) -> web.StreamResponse:
    with named_as_parameters(request.content_type != "application/json"):
        services = request.app[SERVICES]
        jobs = jobs_for(services, _planner(services))
        media = request.content_type
        if media == "application/json":
            body = await read_model(request, ExportBody)
            job_request = JobRequest(
                body.partner, None, body.purpose, body.legal_basis, body.idempotency_key
            )
            lines: AsyncIterator[tuple[int, Any]] = listed(body.records)
        else:
            require_media(request, ("application/json", *STREAM_MEDIA, STREAM_MEDIA_CSV))
            job_request = query_job_request(request, defaults=EXPORT_DEFAULTS, params=EXPORT_PARAMS)
            require_partner(caller.client, job_request.partner)  # before the contract is read
            contract = jobs.contract_for(job_request)
            assert contract.export is not None, "checked by contract_for"
            fmt: Literal["jsonl", "csv"] = "csv" if media == STREAM_MEDIA_CSV else "jsonl"
            columns = frozenset(contract.export.columns)
            pause = request.app[SERVICES].priority.pause
            lines = read_records(request.content.iter_any(), fmt, columns=columns, pause=pause)
        return await accept_job(request, caller, jobs, job_request, lines)


ENDPOINTS = [
    Endpoint(
        method="POST",
        path="/v1/exports/attribute-estimation",
        handler=post_attribute_export,
        summary="Export members to an attribute-estimation recipient in its designated format",
        description=(
            "Decides each record against the partner's contract and the person's consent, "
            "transforms the allowed columns as the contract says (sha256, hmac, clear), writes "
            "them in the recipient's designated file format ([export]: columns and order, "
            "delimiter, header, encoding such as Shift_JIS, line ending) and records one log "
            "entry per person with the SHA-256 of that person's row. A record whose value "
            "cannot be written in the encoding is rejected, naming the column. Answers 202 "
            "once every record is recorded and queued; each chunk of 10,000 records is one "
            "file, uploaded in the background (GET /v1/jobs/{job_id}). The same "
            "idempotency_key never exports twice. Large exports: stream JSONL "
            "(application/x-ndjson) or CSV (text/csv, header row) with partner, purpose, "
            "legal_basis and idempotency_key in the query string. Bodies are UTF-8: another "
            "charset in the Content-Type is 415."
        ),
        tag="provisions",
        roles=SENDERS,
        partner_scoped=True,
        request_model=ExportBody,
        request_media=("application/json", "application/x-ndjson", "text/csv"),
        response_status=202,
        errors=frozenset({404, 409}),  # an unknown partner/purpose; a key reused
        query=(
            QueryParam("partner", "streamed exports: the partner id"),
            QueryParam("purpose", "streamed exports: the purpose (default attribute_estimation)"),
            QueryParam("legal_basis", "streamed exports: the legal basis (default consent)"),
            QueryParam("idempotency_key", "streamed exports (or the Idempotency-Key header)"),
        ),
        example_body={
            "partner": "sample-point-program",
            "purpose": "attribute_estimation",
            "legal_basis": "consent",
            "idempotency_key": "crm-export-2026-11-24-001",
            "records": [
                {
                    "subject_id": "cust-000123",
                    "member_id": "M-000123",
                    "email": "Dana.M@example.com",
                    "birth_year": 1988,
                    "gender": "f",
                    "postal_code": "100-0001",
                }
            ],
        },
    ),
]
