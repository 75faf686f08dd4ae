"""Customer Match provisions, one chunk of records at a time: decide, normalize, hash, record,
queue (architecture: accept -> decide -> transform -> record -> deliver).

`plan_chunk` is pure: given the records of one chunk, the persons' consent states and the
time, it returns the log entries, the outbox rows (Data Manager ingest requests in
consent-homogeneous batches of at most 10,000 members) and the per-record rejections, which
the caller writes in ONE `Ledger.append` (entries, outbox rows and the job's progress commit
together, so a crash leaves a chunk either wholly recorded and queued, or not at all).

Per record: the shape is checked (a bad record is rejected, with the field named and never
its value); `policy.decide` rules on the provision; the allowed fields are normalized and
hashed as the contract says; a field whose value cannot be normalized is not sent and is
reported; a record left with no identifier Google can match is not sent either. Every
record that names a subject gets one log entry: `allowed` with the SHA-256 of the exact bytes
queued for it, or `denied` with the reasons.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from gateway.adapters import InvalidMember
from gateway.adapters.customer_match import (
    MAX_MEMBERS,
    ConsentFlags,
    Member,
    encode_ingest_parts,
    member_bytes,
    payload_sha256,
)
from gateway.consent import SUBJECT_ID_PATTERN
from gateway.contract_kinds import Destination
from gateway.contracts import PartnerContract
from gateway.delivery.outbox import (
    DeliveryMeta,
    JobProgress,
    JobRejections,
    OutboxRow,
    Rejection,
    SideWrite,
)
from gateway.identifiers import Rejected, normalize_and_hash
from gateway.ledger.entries import Outcome
from gateway.ledger.store import LeafRecord
from gateway.ledger.templates import TransferEntries
from gateway.models import ConsentAction, LegalBasis, SubjectState, Transform
from gateway.policy import Decision
from gateway.policy_cache import DecisionCache

__all__ = ["RECORD_FIELDS", "ChunkPlan", "UploadContext", "plan_chunk"]

OPERATION: Final = "ingest"
CONTENT_TYPE: Final = "application/json"
# A record's fields (besides subject_id). *_sha256: the caller hashed them already.
RECORD_FIELDS: Final = (
    "email",
    "phone",
    "given_name",
    "family_name",
    "region_code",
    "postal_code",
    "email_sha256",
    "phone_sha256",
)
_MEMBER_FIELD: Final = {"email_sha256": "email", "phone_sha256": "phone"}
_UNUSABLE: Final = (
    {
        "code": "no_identifier",
        "message": "No identifier Google can match was left after normalization.",
        "rule": "R1",
    },
)


@dataclass(frozen=True)
class UploadContext:
    """What every chunk of one job shares."""

    job_id: str
    transfer_id: str
    contract: PartnerContract
    destination: Destination
    purpose: str
    legal_basis: LegalBasis
    default_region: str
    subject_key: Callable[[str], str]  # the keyed pseudonym of a subject id
    new_id: Callable[[], str]  # delivery ids: the partner's idempotency keys


@dataclass
class ChunkPlan:
    records: list[LeafRecord] = field(default_factory=list)
    writes: list[SideWrite] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1

    def close(
        self, job_id: str, denied: Sequence[LeafRecord], *, done: int, last: bool, now: datetime
    ) -> ChunkPlan:
        """The denied entries after the queued ones, the rejections, the job's new resume
        point: what every kind of chunk ends with."""
        self.records.extend(denied)
        if self.rejections:
            self.writes.append(JobRejections(job_id, tuple(self.rejections)))
        self.writes.append(JobProgress(job_id, done, dict(self.counts), last, now))
        return self


@dataclass
class _Allowed:
    decision: Decision
    member: Member
    part: bytes
    sha: str
    key: str


def plan_chunk(
    ctx: UploadContext,
    lines: Sequence[tuple[int, object]],
    states: Mapping[str, SubjectState],
    now: datetime,
    *,
    done: int,
    last: bool,
) -> ChunkPlan:
    """Plan one chunk: `lines` are (1-based line, parsed record or an error message) in input
    order; `done` is how many input records the job will have consumed after this chunk."""
    plan = ChunkPlan()
    entries = TransferEntries(
        contract=ctx.contract, outcome=Outcome.ALLOWED, transfer_id=ctx.transfer_id, time=now
    )
    denied_entries = TransferEntries(
        contract=ctx.contract, outcome=Outcome.DENIED, transfer_id=ctx.transfer_id, time=now
    )
    allowed: dict[ConsentFlags, list[_Allowed]] = {}
    denied: list[LeafRecord] = []
    decisions = DecisionCache()
    for line, raw in lines:
        record = _checked(line, raw, plan.rejections)
        if record is None:
            plan.count("invalid")
            continue
        subject = record["subject_id"]
        state = states.get(subject) or SubjectState(subject_id=subject)
        outcome = _one(ctx, line, record, state, now, plan.rejections, decisions)
        key = ctx.subject_key(subject)
        if isinstance(outcome, _Allowed):
            outcome.key = key
            allowed.setdefault(_consent_flags(ctx.destination, state), []).append(outcome)
            plan.count("allowed")
        elif isinstance(outcome, Decision):
            denied.append(denied_entries.record(outcome, subject_key=key))
            plan.count("denied")
        else:  # allowed, but no value Google can match survived normalization
            denied.append(denied_entries.record(outcome[0], subject_key=key, reasons=_UNUSABLE))
            plan.count("invalid")
    for flags in sorted(allowed):
        members = allowed[flags]
        for start in range(0, len(members), MAX_MEMBERS):
            _queue(ctx, plan, entries, flags, members[start : start + MAX_MEMBERS], now)
    return plan.close(ctx.job_id, denied, done=done, last=last, now=now)


def _queue(
    ctx: UploadContext,
    plan: ChunkPlan,
    entries: TransferEntries,
    flags: ConsentFlags,
    members: Sequence[_Allowed],
    now: datetime,
) -> None:
    """One ingest request for `members`, and their entries, contiguous in the append."""
    offset = len(plan.records)
    for m in members:
        plan.records.append(entries.record(m.decision, subject_key=m.key, payload_sha256=m.sha))
    body = encode_ingest_parts(ctx.destination, [m.part for m in members], flags)
    meta = DeliveryMeta(
        purpose=ctx.purpose,
        legal_basis=ctx.legal_basis.value,
        subjects=tuple((m.decision.subject_id, m.key, m.sha) for m in members),
    )
    plan.writes.append(
        OutboxRow(
            delivery_id=ctx.new_id(),
            job_id=ctx.job_id,
            partner_id=ctx.contract.id,
            operation=OPERATION,
            transfer_id=ctx.transfer_id,
            entries_offset=offset,
            entry_count=len(members),
            content_type=CONTENT_TYPE,
            payload=body,
            meta=meta.encode(),
            created_at=now,
        )
    )


def _checked(line: int, raw: object, rejections: list[Rejection]) -> dict[str, str] | None:
    """The record if it has the shape of one; else None, with the rejection noted."""

    def reject(code: str, field: str | None, message: str) -> None:
        rejections.append(Rejection(line, subject, code, field, message))

    subject = raw.get("subject_id") if isinstance(raw, dict) else None
    subject = subject if isinstance(subject, str) and _valid_subject(subject) else None
    if isinstance(raw, str):  # the reader could not parse this line
        reject("malformed_record", None, raw)
        return None
    if not isinstance(raw, dict):
        reject("malformed_record", None, "a record must be an object")
        return None
    if subject is None:
        reject("invalid_subject_id", "subject_id", "subject_id is missing or malformed")
        return None
    record: dict[str, str] = {"subject_id": subject}
    for name, value in raw.items():
        if name == "subject_id" or value is None or value == "":
            continue
        if name not in RECORD_FIELDS:
            reject("unknown_field", name, "this field is not part of a customer-match record")
            return None
        if not isinstance(value, str):
            reject("invalid_type", name, "must be a string")
            return None
        record[name] = value
    return record


def _valid_subject(subject: str) -> bool:
    return SUBJECT_ID_PATTERN.fullmatch(subject) is not None


def _one(
    ctx: UploadContext,
    line: int,
    record: dict[str, str],
    state: SubjectState,
    now: datetime,
    rejections: list[Rejection],
    decisions: DecisionCache,
) -> _Allowed | Decision | tuple[Decision]:
    """The record's fate: allowed with its member; the decision to record as denied; or (in
    a 1-tuple) an allowed decision whose record had nothing usable, recorded as not sent."""
    subject = record["subject_id"]
    fields = tuple(f for f in RECORD_FIELDS if f in record)
    decision = decisions.decide_request(
        subject_id=subject,
        purpose=ctx.purpose,
        legal_basis=ctx.legal_basis,
        fields=fields,
        contract=ctx.contract,
        state=state,
        now=now,
    )
    if not decision.allowed:
        code = decision.reasons[0].code if decision.reasons else "denied"
        rejections.append(Rejection(line, subject, code, None, _denial(decision)))
        return decision
    values = _transformed(ctx, line, record, decision, rejections)
    member = Member(subject_id=subject, **values)
    try:
        part = member_bytes(member)
    except InvalidMember as exc:
        message = f"{exc}: nothing Google can match is left"
        rejections.append(Rejection(line, subject, "no_identifier", None, message))
        return (_not_sent(decision),)
    sent_fields = _sent_fields(member)
    sent = tuple(f for f in decision.fields_sent if _member_field(f) in sent_fields)
    if sent != decision.fields_sent:  # the log lists what was sent, never more
        decision = decision.model_copy(update={"fields_sent": sent})
    return _Allowed(decision, member, part, payload_sha256(part), "")


def _denial(decision: Decision) -> str:
    return "; ".join(r.message for r in decision.reasons if r.code) or "denied by policy"


def _not_sent(decision: Decision) -> Decision:
    """An allowed decision whose record turned out unusable: recorded as not sent."""
    return decision.model_copy(update={"allowed": False, "fields_sent": ()})


def _member_field(name: str) -> str:
    return _MEMBER_FIELD.get(name, name)


def _sent_fields(m: Member) -> set[str]:
    sent = {f for f in ("email", "phone") if getattr(m, f) is not None}
    address = ("given_name", "family_name", "region_code", "postal_code")
    if all(getattr(m, f) is not None for f in address):
        sent.update(address)
    return sent


def _transformed(
    ctx: UploadContext,
    line: int,
    record: dict[str, str],
    decision: Decision,
    rejections: list[Rejection],
) -> dict[str, str]:
    """Member values for the allowed fields, as the contract transforms them."""
    transforms = ctx.contract.purposes[ctx.purpose].fields
    region = record.get("region_code")
    out: dict[str, str] = {}
    for name in decision.fields_sent:
        target = _member_field(name)
        if target in out:  # email given both raw and pre-hashed: the raw one was used
            continue
        transform = transforms[name]
        if transform is Transform.HMAC:  # no Data Manager field takes a keyed pseudonym
            continue
        result = normalize_and_hash(
            name, record[name], region=region, default_region=ctx.default_region
        )
        if isinstance(result, Rejected):
            rejections.append(
                Rejection(line, record["subject_id"], result.code.value, name, result.message)
            )
            continue
        out[target] = result.normalized if transform is Transform.CLEAR else str(result.sha256)
    return out


def _consent_flags(destination: Destination, state: SubjectState) -> ConsentFlags:
    """Request-level Consent (Data Manager `Consent`): adUserData is granted (the provision
    was allowed on the person's consent); adPersonalization only with a current grant for the
    destination's personalization purpose."""
    purpose = destination.personalization_purpose
    if purpose is None:
        return (True, False)
    event = state.consents.get(purpose)
    return (True, event is not None and event.action is ConsentAction.GRANT)
