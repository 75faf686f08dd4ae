"""Customer Match provisions and their jobs (role sender; compliance and admin read jobs).

`POST /v1/provisions/customer-match` takes the records in a JSON body (with the job's
parameters) or streamed as JSONL/CSV (parameters in the query string), decides, records and
queues every record before it answers `202 Accepted` with the job: what is accepted is in the
log and the outbox, and a crash after the answer loses nothing. The deliveries then run in
the background; `GET /v1/jobs/{job_id}` follows them, `.../rejections` lists every record not
sent and every part of a sent one left out, with the reason (docs/provisions.md).
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Final, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.delivery.outbox import JobRecord
from gateway.errors import FieldError, NotFound, ProblemError, ValidationFailed
from gateway.models import LegalBasis, Role
from gateway.provisions.customer_match import RECORD_FIELDS
from gateway.provisions.jobs import JobRequest, Jobs, Planner, job_view
from gateway.provisions.reader import read_records
from gateway.storage.rejections_schema_v7 import FIRST_KEY
from gateway.web.auth import require_partner
from gateway.web.endpoints import Caller, Endpoint, QueryParam
from gateway.web.problems import json_response, read_model, require_media
from gateway.web.services import DELIVERY, SERVICES, Services

SENDERS: Final = frozenset({Role.SENDER})
READERS: Final = frozenset({Role.SENDER, Role.COMPLIANCE, Role.ADMIN})
STREAM_MEDIA: Final = {"application/x-ndjson": "jsonl", "application/jsonl": "jsonl"}
STREAM_MEDIA_CSV: Final = "text/csv"
KEY_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,128}$"
REJECTIONS_PAGE: Final = 5_000
JOB_PARAMS: Final = ("partner", "destination", "purpose", "legal_basis")


class CustomerMatchBody(BaseModel):
    """A customer-match upload in one JSON body (see the streamed form for large ones)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partner: str = Field(min_length=1, max_length=63)
    destination: str = Field(min_length=1, max_length=63)
    purpose: str = Field(min_length=1, max_length=63)
    legal_basis: LegalBasis
    idempotency_key: str = Field(pattern=KEY_PATTERN)
    # Objects, not a strict model: a bad record is rejected on its own, the rest go on.
    records: list[dict[str, Any]] = Field(min_length=1)


def jobs_for(services: Services, planner: Planner | None = None) -> Jobs:
    """The jobs of one kind (the planner's; default: Customer Match)."""
    return Jobs(
        store=services.store,
        ledger=services.ledger,
        contracts=services.contracts,
        subject_key=services.subject_key,
        new_id=services.new_id,
        clock=services.clock,
        default_region=services.settings.default_region,
        planner=planner,
        priority=services.priority,
    )


def query_job_request(
    request: web.Request,
    *,
    defaults: Mapping[str, str] | None = None,
    params: tuple[str, ...] = JOB_PARAMS,
) -> JobRequest:
    """The job parameters of a streamed upload: `params` from the query string (`defaults`
    for those left out; a job without a "destination" param has none). Raises
    ValidationFailed naming each one."""
    query = request.query
    key = query.get("idempotency_key") or request.headers.get("Idempotency-Key")
    given = {"destination": "default", "legal_basis": LegalBasis.CONSENT.value}
    given.update(defaults or {})
    values = {name: query.get(name, given.get(name)) for name in params}
    values["idempotency_key"] = key
    errors = [FieldError.query(n, "required") for n, v in values.items() if not v]
    basis = values["legal_basis"]
    if basis and basis not in {b.value for b in LegalBasis}:
        errors.append(FieldError.query("legal_basis", "not a legal basis"))
    if key and not re.fullmatch(KEY_PATTERN, key):
        detail = "1-128 characters: letters, digits and . _ : -"
        errors.append(FieldError.query("idempotency_key", detail))
    if errors:
        raise ValidationFailed(
            "the upload's query parameters are missing or invalid", errors=errors
        )
    destination = values.get("destination")
    return JobRequest(
        partner=str(values["partner"]),
        destination=None if destination is None else str(destination),
        purpose=str(values["purpose"]),
        legal_basis=LegalBasis(str(basis)),
        idempotency_key=str(key),
    )


@contextmanager
def named_as_parameters(streamed: bool) -> Iterator[None]:
    """A streamed upload's job parameters come in the query string: its problems name them as
    parameters (RFC 9457 `errors`), not as pointers into a body that has no such field."""
    try:
        yield
    except ProblemError as exc:
        if streamed:
            exc.errors = tuple(_as_parameter(e) for e in exc.errors)
        raise


def _as_parameter(error: FieldError) -> FieldError:
    name = error.pointer.removeprefix("/")
    if error.parameter is None and name in (*JOB_PARAMS, "idempotency_key"):
        return FieldError.query(name, error.detail)
    return error


async def listed(records: list[dict[str, Any]]) -> AsyncIterator[tuple[int, Any]]:
    """A JSON body's records as the (1-based line, record) pairs that `Jobs.feed` reads."""
    for line, record in enumerate(records, 1):
        yield line, record


async def post_customer_match(request: web.Request, caller: Caller) -> web.StreamResponse:
    with named_as_parameters(request.content_type != "application/json"):
        services = request.app[SERVICES]
        jobs = jobs_for(services)
        media = request.content_type
        if media == "application/json":
            body = await read_model(request, CustomerMatchBody)
            job_request = JobRequest(
                body.partner, body.destination, body.purpose, body.legal_basis, body.idempotency_key
            )
            lines: AsyncIterator[tuple[int, Any]] = listed(body.records)
        else:
            require_media(request, ("application/json", *STREAM_MEDIA, STREAM_MEDIA_CSV))
            job_request = query_job_request(request)
            fmt: Literal["jsonl", "csv"] = "csv" if media == STREAM_MEDIA_CSV else "jsonl"
            lines = read_records(
                request.content.iter_any(),
                fmt,
                columns=frozenset(RECORD_FIELDS),
                pause=request.app[SERVICES].priority.pause,
            )
        return await accept_job(request, caller, jobs, job_request, lines)


async def started(lines: AsyncIterator[tuple[int, Any]]) -> AsyncIterator[tuple[int, Any]]:
    """`lines` whole, their first read already: what the start of a body decides (a CSV
    header refused whole raises ValidationFailed) is decided before a job is opened for it,
    so a refused upload leaves no job behind to hold its idempotency key."""
    try:
        first = await anext(lines)
    except StopAsyncIteration:
        return lines

    async def whole() -> AsyncIterator[tuple[int, Any]]:
        yield first
        async for line in lines:
            yield line

    return whole()


async def accept_job(
    request: web.Request,
    caller: Caller,
    jobs: Jobs,
    job_request: JobRequest,
    lines: AsyncIterator[tuple[int, Any]],
) -> web.StreamResponse:
    """Open (or find) the caller's job, feed it every record, answer 202 with the job.
    Raises Forbidden (not the caller's partner), Conflict, NotFound, ValidationFailed,
    StorageError."""
    jobs.contract_for(job_request)  # an unknown partner is a 404 before it is a 403
    require_partner(caller.client, job_request.partner)
    assert caller.client is not None
    lines = await started(lines)
    record, _ = await jobs.open(job_request, caller.client.client_id)
    record = await jobs.feed(record, job_request, lines)
    request.app[DELIVERY].wake()
    view = job_view(record)
    response = json_response({**view, "links": job_links(record)}, status=202)
    response.headers["Location"] = f"/v1/jobs/{record.job.job_id}"
    return response


def job_links(record: JobRecord) -> dict[str, str]:
    base = f"/v1/jobs/{record.job.job_id}"
    return {"self": base, "rejections": f"{base}/rejections"}


async def _job(request: web.Request, caller: Caller) -> JobRecord:
    """The `{job_id}` job, if the caller may see it. Raises NotFound."""
    services = request.app[SERVICES]
    found = await services.store.get_job(request.match_info["job_id"])
    client = caller.client
    if found is None or client is None:
        raise NotFound("no such job")
    if client.role is Role.SENDER and found.job.client_id != client.client_id:
        raise NotFound("no such job")  # another sender's job is not ours to confirm exists
    return found


async def get_job(request: web.Request, caller: Caller) -> web.StreamResponse:
    record = await _job(request, caller)
    return json_response({**job_view(record), "links": job_links(record)})


async def get_rejections(request: web.Request, caller: Caller) -> web.StreamResponse:
    record = await _job(request, caller)
    fmt = request.query.get("format", "jsonl")
    if fmt not in ("jsonl", "csv"):
        raise ValidationFailed(
            "format must be jsonl or csv", errors=[FieldError.query("format", "jsonl or csv")]
        )
    store = request.app[SERVICES].store
    media = "text/csv" if fmt == "csv" else "application/x-ndjson"
    response = web.StreamResponse(headers={"Content-Type": f"{media}; charset=utf-8"})
    await response.prepare(request)
    columns = ("line", "subject_id", "code", "field", "message")
    if fmt == "csv":
        await response.write((",".join(columns) + "\r\n").encode())
    after = FIRST_KEY
    # Keyset pages on (line, ordinal): a line's rejections may straddle two pages.
    while page := await store.job_rejections(record.job.job_id, after=after, limit=REJECTIONS_PAGE):
        out = io.StringIO()
        writer = csv.writer(out)
        for _, r in page:
            row = (r.line, r.subject_id, r.code, r.field, r.message)
            if fmt == "csv":
                writer.writerow(row)
            else:
                out.write(json.dumps(dict(zip(columns, row, strict=True))) + "\n")
        await response.write(out.getvalue().encode())
        after = page[-1][0]
        if len(page) < REJECTIONS_PAGE:
            break
    await response.write_eof()
    return response


EXAMPLE_RECORD: Final = {
    "subject_id": "cust-000123",
    "email": "Dana.M@example.com",
    "phone": "090-1234-5678",
    "region_code": "JP",
    "postal_code": "100-0001",
}

ENDPOINTS = [
    Endpoint(
        method="POST",
        path="/v1/provisions/customer-match",
        handler=post_customer_match,
        summary="Upload an audience to a Customer Match partner (Data Manager API)",
        description=(
            "Decides each record against the partner's contract and the person's consent, "
            "normalizes and hashes the allowed fields, records one log entry per person and "
            "queues consent-homogeneous Data Manager ingest requests (at most 10,000 members "
            "each). Answers 202 once every record is recorded and queued; deliveries follow in "
            "the background (GET /v1/jobs/{job_id}). The same idempotency_key never uploads "
            "twice: resubmitting continues an interrupted upload. Large uploads: stream JSONL "
            "(application/x-ndjson) or CSV (text/csv, header row) with partner, destination, "
            "purpose, legal_basis and idempotency_key in the query string."
        ),
        tag="provisions",
        roles=SENDERS,
        partner_scoped=True,
        request_model=CustomerMatchBody,
        request_media=("application/json", "application/x-ndjson", "text/csv"),
        response_status=202,
        errors=frozenset({404, 409}),  # an unknown partner/destination/purpose; a key reused
        query=(
            QueryParam("partner", "streamed uploads: the partner id"),
            QueryParam("destination", "streamed uploads: a destination of the contract"),
            QueryParam("purpose", "streamed uploads: the purpose"),
            QueryParam("legal_basis", "streamed uploads: the legal basis (default consent)"),
            QueryParam("idempotency_key", "streamed uploads (or the Idempotency-Key header)"),
        ),
        example_body={
            "partner": "google-customer-match",
            "destination": "default",
            "purpose": "ad_customer_match",
            "legal_basis": "consent",
            "idempotency_key": "crm-2026-11-24-001",
            "records": [EXAMPLE_RECORD],
        },
    ),
    Endpoint(
        method="GET",
        path="/v1/jobs/{job_id}",
        handler=get_job,
        summary="A provision job: state (queued, running, done, failed) and outcome counts",
        tag="provisions",
        roles=READERS,
        example_path={"job_id": "00000000-0000-4000-8000-000000000000"},
    ),
    Endpoint(
        method="GET",
        path="/v1/jobs/{job_id}/rejections",
        handler=get_rejections,
        summary="A job's records not sent, and parts of sent ones left out, with reasons",
        tag="provisions",
        roles=READERS,
        response_media="application/x-ndjson",
        query=(QueryParam("format", "jsonl (default) or csv"),),
        example_path={"job_id": "00000000-0000-4000-8000-000000000000"},
    ),
]
