"""Provision jobs: create (idempotently), feed records in chunks, report.

A job is created once per (client, idempotency key). Feeding reads the caller's records in
input order, chunk by chunk; each chunk's entries, outbox rows, rejections and the job's new
resume point are appended together (the kind's `Planner`, one `Ledger.append`). Resubmitting
the same key continues where the last committed chunk ended, so an upload cut off by a crash
or a dropped connection can be sent again whole: the records already taken are skipped,
nothing is queued twice.

The kind of job is its planner's: `CustomerMatchPlanner` (the default) or
`gateway.provisions.attribute_export.ExportPlanner`; the job stores it as `kind`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

from gateway.contracts import PartnerContract
from gateway.cooperative import Priority, Steps, in_slices
from gateway.delivery.outbox import JobRecord, NewJob
from gateway.errors import Conflict, FieldError, NotFound, ValidationFailed
from gateway.ledger.service import Ledger
from gateway.models import LegalBasis, PartnerKind, SubjectState
from gateway.provisions.customer_match import ChunkPlan, UploadContext, plan_chunk_steps
from gateway.storage import Store

__all__ = ["CHUNK_RECORDS", "CustomerMatchPlanner", "JobRequest", "Jobs", "Planner", "job_view"]

CHUNK_RECORDS: Final = 10_000  # records decided per append: a full Data Manager request


@dataclass(frozen=True)
class JobRequest:
    partner: str
    destination: str | None  # customer match: a destination of the contract; exports: None
    purpose: str
    legal_basis: LegalBasis
    idempotency_key: str

    def digest(self) -> str:
        """What must match when the same idempotency key comes again."""
        fields = [self.partner, self.destination, self.purpose, self.legal_basis.value]
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


class Planner(Protocol):
    """How one kind of job turns a chunk of records into entries and side writes (pure)."""

    @property
    def kind(self) -> PartnerKind:
        """The contracts it takes; also the job's stored `kind`."""

    def check(self, request: JobRequest, contract: PartnerContract) -> None:
        """What the kind needs of a request beyond partner, kind and purpose (which `Jobs`
        checks). Raises NotFound, ValidationFailed."""

    def plan(
        self,
        request: JobRequest,
        job: NewJob,
        contract: PartnerContract,
        lines: Sequence[tuple[int, Any]],
        states: Mapping[str, SubjectState],
        now: datetime,
        *,
        done: int,
        last: bool,
    ) -> Steps[ChunkPlan]:
        """One chunk: (1-based line, record or parse-error text) in input order; `done` is
        the job's resume point after it (the line of its last record). Raises nothing for
        any record. Pauses (gateway.cooperative) after each record, say: a chunk takes a
        few hundred milliseconds, too long to hold the loop."""


@dataclass(frozen=True)
class CustomerMatchPlanner:
    """Customer Match uploads: gateway.provisions.customer_match.plan_chunk."""

    subject_key: Callable[[str], str]
    new_id: Callable[[], str]
    default_region: str

    @property
    def kind(self) -> PartnerKind:
        return PartnerKind.CUSTOMER_MATCH

    def check(self, request: JobRequest, contract: PartnerContract) -> None:
        """Raises NotFound for a destination the contract does not declare."""
        if request.destination not in contract.destinations:
            names = ", ".join(sorted(contract.destinations))
            detail = f"the contract declares: {names}"
            raise NotFound("unknown destination", errors=[FieldError("/destination", detail)])

    def plan(
        self,
        request: JobRequest,
        job: NewJob,
        contract: PartnerContract,
        lines: Sequence[tuple[int, Any]],
        states: Mapping[str, SubjectState],
        now: datetime,
        *,
        done: int,
        last: bool,
    ) -> Steps[ChunkPlan]:
        assert request.destination is not None, "checked by check()"
        ctx = UploadContext(
            job_id=job.job_id,
            transfer_id=job.transfer_id,
            contract=contract,
            destination=contract.destinations[request.destination],
            purpose=request.purpose,
            legal_basis=request.legal_basis,
            default_region=self.default_region,
            subject_key=self.subject_key,
            new_id=self.new_id,
        )
        return plan_chunk_steps(ctx, lines, states, now, done=done, last=last)


class Jobs:
    def __init__(
        self,
        *,
        store: Store,
        ledger: Ledger,
        contracts: Mapping[str, PartnerContract],
        subject_key: Callable[[str], str],
        new_id: Callable[[], str],
        clock: Callable[[], datetime],
        default_region: str,
        planner: Planner | None = None,
        priority: Priority | None = None,
    ) -> None:
        """`priority`: whose urgent work (fraud checks) planning a chunk waits for
        (gateway.cooperative); by default, nobody's."""
        self._store = store
        self._ledger = ledger
        self._contracts = contracts
        self._new_id = new_id
        self._clock = clock
        self._planner = planner or CustomerMatchPlanner(subject_key, new_id, default_region)
        self._pause = (priority or Priority()).pause

    def contract_for(self, request: JobRequest) -> PartnerContract:
        """The contract, checked to take this request. Raises NotFound, ValidationFailed."""
        contract = self._contracts.get(request.partner)
        if contract is None:
            raise NotFound(
                "unknown partner", errors=[FieldError("/partner", "no contract has this id")]
            )
        kind = self._planner.kind
        if contract.kind is not kind:
            detail = f"the partner's kind is {contract.kind.value}, not {kind.value}"
            raise ValidationFailed("wrong kind of partner", errors=[FieldError("/partner", detail)])
        self._planner.check(request, contract)
        if request.purpose not in contract.purposes:
            names = ", ".join(sorted(contract.purposes))
            raise NotFound(
                "unknown purpose",
                errors=[FieldError("/purpose", f"the contract lists: {names}")],
            )
        return contract

    async def open(self, request: JobRequest, client_id: str) -> tuple[JobRecord, bool]:
        """The job of this (client, key): created now (True) or found. Raises Conflict when
        the key was used with other parameters; NotFound/ValidationFailed as contract_for."""
        self.contract_for(request)
        job = NewJob(
            job_id=self._new_id(),
            client_id=client_id,
            idempotency_key=request.idempotency_key,
            request_sha256=request.digest(),
            kind=self._planner.kind.value,
            partner_id=request.partner,
            destination=request.destination,
            purpose=request.purpose,
            legal_basis=request.legal_basis.value,
            transfer_id=self._new_id(),
            created_at=self._clock(),
        )
        stored, created = await self._store.create_job(job)
        if stored.job.request_sha256 != job.request_sha256:
            raise Conflict(
                "this idempotency key was used with other parameters",
                errors=[FieldError("/idempotency_key", "already used for another upload")],
            )
        return stored, created

    async def feed(
        self, record: JobRecord, request: JobRequest, lines: AsyncIterator[tuple[int, Any]]
    ) -> JobRecord:
        """Consume `lines` ((1-based line, record or parse-error text), in input order),
        skipping those an earlier submission already committed. Returns the job as stored.
        Raises StorageError; NotFound/ValidationFailed as contract_for."""
        contract = self.contract_for(request)
        job_id = record.job.job_id
        async with self._store.exclusive(f"job:{job_id}"):  # another submission may be feeding it
            current = await self._store.get_job(job_id)  # so its resume point is read now
            assert current is not None, "a job is never deleted"
            if not current.input_complete:
                chunk = _Chunking(request, current.job, contract)
                await self._consume(chunk, current.records_done, lines)
        found = await self._store.get_job(job_id)
        assert found is not None, "a job is never deleted"
        return found

    async def _consume(
        self, ctx: _Chunking, done: int, lines: AsyncIterator[tuple[int, Any]]
    ) -> None:
        """Chunk the input and write each chunk's plan in order. The next chunk is planned
        (CPU, on the loop, in slices) while the previous one commits (I/O, on the store's
        side): the consent states it needs are read first, so the commit does not wait behind
        them."""
        chunk: list[tuple[int, Any]] = []
        last_line = done
        ready: ChunkPlan | None = None
        async for line, raw in lines:
            last_line = line
            if line <= done:
                continue  # committed by an earlier submission of this key
            chunk.append((line, raw))
            if len(chunk) >= CHUNK_RECORDS:
                ready = await self._next(ctx, ready, chunk, last_line, last=False)
                chunk = []
        ready = await self._next(ctx, ready, chunk, max(last_line, done), last=True)
        await self._write(ready)

    async def _next(
        self,
        ctx: _Chunking,
        ready: ChunkPlan | None,
        chunk: list[tuple[int, Any]],
        done: int,
        *,
        last: bool,
    ) -> ChunkPlan:
        """Write `ready` while planning `chunk`; returns the new plan, not yet written."""
        subjects = [r.get("subject_id") for _, r in chunk if isinstance(r, dict)]
        wanted = [s for s in subjects if isinstance(s, str)]
        states = await self._store.subject_states(wanted) if wanted else {}
        writing = asyncio.create_task(self._write(ready)) if ready is not None else None
        try:
            await asyncio.sleep(0)  # let the write reach the store before planning
            steps = self._planner.plan(
                ctx.request, ctx.job, ctx.contract, chunk, states, self._clock(), done=done,
                last=last,
            )  # fmt: skip
            plan = await in_slices(steps, self._pause)  # a fraud check need not wait for it
        except BaseException:
            if writing is not None:
                await asyncio.gather(writing, return_exceptions=True)
            raise
        if writing is not None:
            await writing
        return plan

    async def _write(self, plan: ChunkPlan) -> None:
        if plan.records:
            await self._ledger.append(plan.records, outbox=plan.writes)
        else:
            await self._store.apply_side_writes(plan.writes)


@dataclass(frozen=True)
class _Chunking:
    """What every chunk of one feed shares."""

    request: JobRequest
    job: NewJob
    contract: PartnerContract


def job_view(record: JobRecord) -> dict[str, Any]:
    """`GET /v1/jobs/{job_id}`: the job, its state and its counts by outcome."""
    deliveries = record.deliveries
    pending = deliveries.get("pending", (0, 0))
    delivered = deliveries.get("delivered", (0, 0))
    dead = deliveries.get("dead", (0, 0))
    if not record.input_complete:
        state = "queued"
    elif pending[0]:
        state = "running"
    elif dead[0]:
        state = "failed"
    else:
        state = "done"
    counts = {name: record.counts.get(name, 0) for name in ("allowed", "denied", "invalid")}
    # Records read, each counted once by its outcome. Not records_done: that is the resume
    # point, a line number, and blank lines take a number without being records.
    counts["received"] = sum(counts.values())
    counts.update(delivered=delivered[1], failed=dead[1], pending=pending[1])
    job = record.job
    return {
        "job_id": job.job_id,
        "kind": job.kind,
        "state": state,
        "counts": counts,
        "partner": job.partner_id,
        "destination": job.destination,
        "purpose": job.purpose,
        "legal_basis": job.legal_basis,
        "transfer_id": job.transfer_id,
        "requests": {"pending": pending[0], "delivered": delivered[0], "dead": dead[0]},
        "created_at": job.created_at.isoformat(),
        "updated_at": record.updated_at.isoformat(),
    }
