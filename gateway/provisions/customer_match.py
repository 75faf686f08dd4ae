"""Customer Match provisions, one chunk of records at a time: decide, normalize, hash, record,
queue (architecture: accept -> decide -> transform -> record -> deliver).

`plan_chunk` is pure: given the records of one chunk, the persons' consent states and the
time, it returns the log entries, the outbox rows (Data Manager ingest requests in
consent-homogeneous batches of at most 10,000 members) and the per-record rejections, which
the caller writes in ONE `Ledger.append` (entries, outbox rows and the job's progress commit
together, so a crash leaves a chunk either wholly recorded and queued, or not at all).
`plan_chunk_steps` is the same work as gateway.cooperative steps, which the service runs in
slices of a few milliseconds: a chunk takes a few hundred, and a fraud check must not wait.

Per record: the shape is checked (a bad record is rejected, with the field named and never
its value); `policy.decide` rules on the provision; the allowed fields are normalized and
hashed as the contract says; a field whose value cannot be normalized is not sent and is
reported; address parts given but not sent because the address is not whole are reported
(`address_incomplete`); of an identifier given both raw and pre-hashed (email and
email_sha256, phone and phone_sha256) the raw one is sent when it is valid and the other is
reported (`identifier_given_twice`); a record left with no identifier Google can match is not
sent either. Every record that names a subject gets one log entry: `allowed` with the SHA-256
of the exact bytes queued for it and the fields sent in it, or `denied` with the reasons.

A chunk is ten thousand records of a handful of shapes, so what depends only on the shape is
worked out once per chunk (`_Chunk`): the decision per kind of person (DecisionCache, bound per
set of fields, shared by the kind: no Decision per person), its entries' shape (KindEntries),
the steps that transform a decision's fields, which of them a member sends; values are hashed
one at a time by `identifiers.Hasher` and written straight to the member's bytes
(`member_bytes_of`). tests/unit/test_plan_chunk.py holds the result to a plain planner that
does all of it record by record, byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from gateway.adapters import InvalidMember
from gateway.adapters.customer_match import (
    ADDRESS_FIELDS,
    MAX_MEMBERS,
    MEMBER_VALUES,
    ConsentFlags,
    encode_ingest_parts,
    member_bytes_of,
    payload_sha256,
    unsent_address_parts,
)
from gateway.contract_kinds import Destination
from gateway.contracts import PartnerContract
from gateway.cooperative import Steps, run_through
from gateway.delivery.outbox import (
    DeliveryMeta,
    JobProgress,
    JobRejections,
    OutboxRow,
    Rejection,
    SideWrite,
)
from gateway.identifiers import Hasher, Rejected, normalize_and_hash, transform_for
from gateway.ledger.store import LeafRecord
from gateway.models import ConsentAction, LegalBasis, SubjectState, Transform
from gateway.policy import Decision
from gateway.policy_cache import DecisionCache, Evidence, RequestDecisions
from gateway.provisions.customer_match_records import RECORD_FIELDS, checked_record
from gateway.provisions.kind_entries import KindEntries

__all__ = ["RECORD_FIELDS", "ChunkPlan", "UploadContext", "plan_chunk", "plan_chunk_steps"]

OPERATION: Final = "ingest"
CONTENT_TYPE: Final = "application/json"
_MEMBER_FIELD: Final = {"email_sha256": "email", "phone_sha256": "phone"}
_GRANT: Final = ConsentAction.GRANT
_INCOMPLETE: Final = "address_incomplete"
_TWICE: Final = "identifier_given_twice"
_ADDRESS_NEEDS: Final = (
    "not sent: an address is sent only whole, with given_name, family_name, region_code and "
    "postal_code all given, valid and allowed by the contract"
)
# An ignored pre-hashed value: the raw one of the same identifier was sent (raw ones go first).
_GIVEN_TWICE: Final = {
    hashed: f"not sent: {raw} was given too and was sent; give {raw} or {hashed}, not both"
    for hashed, raw in _MEMBER_FIELD.items()
}
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

    def request(
        self,
        entries: Iterable[LeafRecord],
        *,
        subjects: tuple[tuple[str, str, str], ...],
        delivery_id: str,
        job_id: str,
        partner_id: str,
        operation: str,
        transfer_id: str,
        purpose: str,
        legal_basis: str,
        content_type: str,
        payload: bytes,
        now: datetime,
    ) -> Steps[None]:
        """One outbox request and the entries of its people (one each, in `subjects` order:
        subject id, subject key, payload SHA-256), contiguous in the append, the row pointing
        at them. What every planner queues a request with; pauses after each entry."""
        offset = len(self.records)
        for entry in entries:
            self.records.append(entry)
            yield
        assert len(self.records) - offset == len(subjects), "one entry per person"
        meta = DeliveryMeta(purpose=purpose, legal_basis=legal_basis, subjects=subjects)
        encoded = yield from meta.encoded()
        self.writes.append(
            OutboxRow(
                delivery_id=delivery_id,
                job_id=job_id,
                partner_id=partner_id,
                operation=operation,
                transfer_id=transfer_id,
                entries_offset=offset,
                entry_count=len(subjects),
                content_type=content_type,
                payload=payload,
                meta=encoded,
                created_at=now,
            )
        )

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


# One allowed person: (their kind's decision, their evidence, subject id, member bytes, the
# bytes' SHA-256, subject key). The decision is shared (DecisionCache.decide_shared): the
# entry takes the subject id and evidence apart (KindEntries).
_Queued = tuple[Decision, Evidence, str, bytes, str, str]
_Send = Callable[[str, str | None], "str | Rejected"]  # (value, region) -> what is sent
_Step = tuple[str, int, _Send]  # (record field, index in MEMBER_VALUES, what is sent for it)


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
    order; `done` is the job's resume point after this chunk (a line number: every line up to
    it is consumed; blank lines have numbers too, so it is no count of records)."""
    return run_through(plan_chunk_steps(ctx, lines, states, now, done=done, last=last))


def plan_chunk_steps(
    ctx: UploadContext,
    lines: Sequence[tuple[int, object]],
    states: Mapping[str, SubjectState],
    now: datetime,
    *,
    done: int,
    last: bool,
) -> Steps[ChunkPlan]:
    """`plan_chunk`, pausing after each record and each entry (gateway.cooperative)."""
    chunk = _Chunk(ctx, now)
    for line, raw in lines:
        chunk.take(line, raw, states)
        yield
    return (yield from chunk.close(done=done, last=last))


class _Chunk:
    """One chunk being planned, and what its records share, worked out once."""

    def __init__(self, ctx: UploadContext, now: datetime) -> None:
        self.ctx, self.now = ctx, now
        self.plan = ChunkPlan()
        self.kinds = KindEntries(contract=ctx.contract, transfer_id=ctx.transfer_id, time=now)
        self.denied: list[LeafRecord] = []
        # Allowed people by adPersonalization: denied, granted (adUserData is always granted).
        self._groups: tuple[list[_Queued], list[_Queued]] = ([], [])
        self._cache = DecisionCache()
        self._requests: dict[tuple[str, ...], RequestDecisions] = {}  # by the record's keys
        self._fields: dict[tuple[str, ...], _Fields] = {}  # by decision.fields_sent
        self._hasher = Hasher(default_region=ctx.default_region)
        self._personalization = ctx.destination.personalization_purpose

    def take(self, line: int, raw: object, states: Mapping[str, SubjectState]) -> None:
        """Plan one record: rejected, denied, or queued for its consent group."""
        record = checked_record(line, raw, self.plan.rejections)
        if record is None:
            self.plan.count("invalid")
            return
        subject = record["subject_id"]
        state = states.get(subject) or SubjectState(subject_id=subject)
        decision, evidence = self._decide(record, subject, state)
        key = self.ctx.subject_key(subject)
        if not decision.allowed:
            code, message = self.kinds.denial(decision)
            self.plan.rejections.append(Rejection(line, subject, code, None, message))
            self.denied.append(self.kinds.denied(decision, evidence, subject, key))
            self.plan.count("denied")
            return
        fields = self._fields.get(decision.fields_sent)
        if fields is None:
            fields = self._fields[decision.fields_sent] = self._fields_for(decision.fields_sent)
        values, dropped = self._values(line, record, fields.steps)
        try:
            part = member_bytes_of(*values)
        except InvalidMember as exc:  # no value Google can match survived normalization
            message = f"{exc}: nothing Google can match is left"
            self.plan.rejections.append(Rejection(line, subject, "no_identifier", None, message))
            unsent = self.kinds.not_sent(decision)
            self.denied.append(self.kinds.denied(unsent, evidence, subject, key, _UNUSABLE))
            self.plan.count("denied")
            return
        if fields.address and (fields.address < len(ADDRESS_FIELDS) or dropped is not None):
            self._address(line, subject, values)  # parts given: perhaps not a whole address
        if dropped is None:  # every value sent
            sent = fields.sent
        else:
            sent = _sent_fields(decision.fields_sent, values, dropped)
        if sent != decision.fields_sent:  # the log lists what was sent, never more
            decision = self.kinds.with_fields_sent(decision, sent)
        queued = (decision, evidence, subject, part, payload_sha256(part), key)
        self._group(state).append(queued)
        self.plan.count("allowed")

    def close(self, *, done: int, last: bool) -> Steps[ChunkPlan]:
        """The requests, consent group by group, after the entries; then the chunk's tail."""
        for personalization, members in enumerate(self._groups):  # in ConsentFlags order
            flags = (True, bool(personalization))
            for start in range(0, len(members), MAX_MEMBERS):
                yield from self._queue(flags, members[start : start + MAX_MEMBERS])
        return self.plan.close(self.ctx.job_id, self.denied, done=done, last=last, now=self.now)

    def _queue(self, flags: ConsentFlags, members: Sequence[_Queued]) -> Steps[None]:
        """One ingest request for `members`, and their entries, contiguous in the append."""
        ctx = self.ctx
        allowed = self.kinds.allowed
        yield from self.plan.request(
            (allowed(d, e, subject, key, sha) for d, e, subject, _, sha, key in members),
            subjects=tuple((subject, key, sha) for _, _, subject, _, sha, key in members),
            delivery_id=ctx.new_id(),
            job_id=ctx.job_id,
            partner_id=ctx.contract.id,
            operation=OPERATION,
            transfer_id=ctx.transfer_id,
            purpose=ctx.purpose,
            legal_basis=ctx.legal_basis.value,
            content_type=CONTENT_TYPE,
            payload=encode_ingest_parts(ctx.destination, [m[3] for m in members], flags),
            now=self.now,
        )

    def _decide(
        self, record: dict[str, str], subject: str, state: SubjectState
    ) -> tuple[Decision, Evidence]:
        keys = tuple(record)
        requests = self._requests.get(keys)
        if requests is None:
            requests = self._requests[keys] = self._cache.for_request(
                purpose=self.ctx.purpose,
                legal_basis=self.ctx.legal_basis,
                fields=tuple(f for f in RECORD_FIELDS if f in record),
                contract=self.ctx.contract,
                now=self.now,
            )
        return requests.decide_shared(subject, state)

    def _values(
        self, line: int, record: dict[str, str], steps: tuple[_Step, ...]
    ) -> tuple[list[str | None], list[str] | None]:
        """`member_bytes_of`'s arguments: the allowed fields' values, as the contract
        transforms them; and the fields left out, reported (None when none is: the common
        case costs nothing more). A value that cannot be normalized is left out, and so is
        a pre-hashed one whose raw twin was sent."""
        region = record.get("region_code")
        out: list[str | None] = [None] * len(MEMBER_VALUES)
        dropped: list[str] | None = None
        for name, index, send in steps:
            if out[index] is None:
                value = send(record[name], region)
                if not isinstance(value, Rejected):
                    out[index] = value
                    continue
                code, message = value.code.value, value.message
            else:  # given raw and pre-hashed: the raw one was sent (raw fields come first)
                code, message = _TWICE, _GIVEN_TWICE[name]
            self.plan.rejections.append(Rejection(line, record["subject_id"], code, name, message))
            dropped = [name] if dropped is None else [*dropped, name]
        return out, dropped

    def _address(self, line: int, subject: str, values: Sequence[str | None]) -> None:
        """Report the address parts a member holds but does not send (an address goes only
        whole: Google's AddressInfo requires all four)."""
        if parts := unsent_address_parts(values[2], values[3], values[4], values[5]):
            message = f"{', '.join(parts)} {_ADDRESS_NEEDS}"
            self.plan.rejections.append(Rejection(line, subject, _INCOMPLETE, parts[0], message))

    def _fields_for(self, fields_sent: tuple[str, ...]) -> _Fields:
        purpose = self.ctx.contract.purposes[self.ctx.purpose]  # listed: the decision allowed it
        steps = tuple(
            (name, MEMBER_VALUES.index(_member_field(name)), self._sender(name, transform))
            # Raw fields first, whatever the contract's order: a raw value wins over its
            # pre-hashed twin (the gateway normalized it itself).
            for name in sorted(fields_sent, key=_MEMBER_FIELD.__contains__)
            if (transform := purpose.fields[name]) is not Transform.HMAC  # no such Google field
        )
        full: list[str | None] = [None] * len(MEMBER_VALUES)
        for _, index, _ in steps:
            full[index] = "(a value)"
        address = sum(1 for _, index, _ in steps if MEMBER_VALUES[index] in ADDRESS_FIELDS)
        return _Fields(steps, address, _sent_fields(fields_sent, full, ()))

    def _sender(self, name: str, transform: Transform) -> _Send:
        """What is sent for a value of `name` under `transform`: the Hasher's answer when the
        contract sends the field as the identifier profile does (always, in practice)."""
        if transform is transform_for(name):
            return self._hasher.of(name)
        default_region = self.ctx.default_region

        def send(value: str, region: str | None) -> str | Rejected:
            result = normalize_and_hash(name, value, region=region, default_region=default_region)
            if isinstance(result, Rejected):
                return result
            return result.normalized if transform is Transform.CLEAR else str(result.sha256)

        return send

    def _group(self, state: SubjectState) -> list[_Queued]:
        """The person's consent group (Data Manager `Consent`): adUserData is granted (the
        provision was allowed on the person's consent); adPersonalization only with a current
        grant for the destination's personalization purpose."""
        purpose = self._personalization
        event = None if purpose is None else state.consents.get(purpose)
        return self._groups[event is not None and event.action is _GRANT]


@dataclass(frozen=True, slots=True)
class _Fields:
    """How a member is made of one set of allowed fields."""

    steps: tuple[_Step, ...]  # (record field, index in MEMBER_VALUES, what is sent for it)
    address: int  # how many of the steps are address parts (0 to 4)
    sent: tuple[str, ...]  # the fields such a member sends when no value is left out


def _sent_fields(
    fields_sent: tuple[str, ...], values: Sequence[str | None], dropped: Sequence[str]
) -> tuple[str, ...]:
    """The allowed fields a member of these values (`member_bytes_of`'s arguments) sends,
    `dropped` (refused, or the ignored twin of a raw identifier) left out."""
    present = {name for name, value in zip(MEMBER_VALUES, values, strict=True) if value is not None}
    targets: set[str] = {f for f in ("email", "phone") if f in present}
    if all(f in present for f in ADDRESS_FIELDS):  # an address goes whole or not at all
        targets.update(ADDRESS_FIELDS)
    return tuple(f for f in fields_sent if _member_field(f) in targets and f not in dropped)


def _member_field(name: str) -> str:
    return _MEMBER_FIELD.get(name, name)
