"""Attribute-estimation exports, one chunk of records at a time: decide, transform, encode,
record, queue (architecture: accept -> decide -> transform -> record -> deliver).

`ExportPlanner` is the `gateway.provisions.jobs.Planner` of kind attribute_export; its `plan`
is pure. Per record: the shape is checked (keys: subject_id and the contract's export
columns; a bad record is rejected with the field named, never its value, and a key that is
no field the gateway knows is not named either: it is the caller's text, maybe an email or a
name, and rejections are stored and listed); `policy.decide`
rules on it; each allowed column is transformed as the purpose's fields table says and the
row is encoded in the recipient's designated format (`adapters.attribute_export.encode_row`).
A value with no exact form in the file's encoding (an emoji in Shift_JIS) rejects that
record, naming the column; a value that does not normalize (a broken email) leaves its
column empty, is reported, and is not listed as sent.

Transforms: `sha256` is SHA-256 hex of the value normalized per the identifier profile (a
field the profile does not know, as given); `hmac` is `field_pseudonym` (keyed under the
pseudonymization key and separated per partner, so two recipients' files cannot be joined
on it); `prehashed` is a caller's SHA-256, checked; `clear` is the normalized value (a field
the profile does not know, as given).

One outbox row per chunk: each chunk's allowed rows are one complete file (with the header
when the format has one) sent as its own upload under its own idempotency key, so an export
of a million members is about a hundred files. Every record that passes the shape check gets
one log entry: `allowed` with the SHA-256 of that person's encoded row bytes, or `denied`
(refused by policy, or unwritable in the encoding). A record rejected for its shape is never
decided and nothing of it leaves, so it is no provision (APPI Art. 29 records provisions): it
is a rejection row only, with no log entry, as in Customer Match (provisions.customer_match).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from gateway.adapters import UnencodableValue
from gateway.adapters.attribute_export import content_type, encode_row, header_bytes
from gateway.contract_kinds import PER_PERSON_NAMES, ExportFormat
from gateway.contracts import PartnerContract
from gateway.cooperative import Steps
from gateway.delivery.outbox import (
    NewJob,
    Rejection,
)
from gateway.errors import FieldError, ValidationFailed
from gateway.identifiers import KINDS, PREHASHED_KINDS, Rejected, normalize
from gateway.identifiers.digest import sha256_hex
from gateway.identifiers.text import normalize_prehashed
from gateway.ledger.entries import Outcome
from gateway.ledger.store import LeafRecord
from gateway.ledger.templates import TransferEntries
from gateway.models import PartnerKind, SubjectState, Transform
from gateway.policy import Decision, ProvisionItem
from gateway.policy_cache import DecisionCache
from gateway.provisions.customer_match import ChunkPlan
from gateway.provisions.jobs import JobRequest
from gateway.provisions.reader import subject_record

__all__ = ["DEFAULT_PURPOSE", "OPERATION", "ExportPlanner", "field_pseudonym", "pseudonymizer"]

OPERATION: Final = "upload"  # the delivery worker posts it to {endpoint}/v1/uploads
DEFAULT_PURPOSE: Final = "attribute_estimation"
_PSEUDONYM_DOMAIN: Final = b"gateway.field-pseudonym/v1"
_UNNAMED_FIELD: Final = (
    "a key that is no column of the partner's file, and no field the gateway knows "
    "(not named: it may be personal data)"
)


def pseudonymizer(partner_id: str, name: str, *, key: bytes) -> Callable[[str], str]:
    """`field_pseudonym` for one partner's field, keyed once (the HMAC state of the prefix
    is copied per value)."""
    prefix = b"\x00".join((_PSEUDONYM_DOMAIN, partner_id.encode(), name.encode(), b""))
    keyed = hmac.new(key, prefix, hashlib.sha256)

    def pseudonym(value: str) -> str:
        h = keyed.copy()
        h.update(value.encode())
        return h.hexdigest()

    return pseudonym


def field_pseudonym(partner_id: str, name: str, value: str, *, key: bytes) -> str:
    """HMAC-SHA256 (RFC 2104) hex, under the pseudonymization key, of
    `"gateway.field-pseudonym/v1" 0x00 partner 0x00 field 0x00 value`: bound to the partner and
    the field, so the recipient can echo it back and we can recompute it, but it is not the
    log's subject key and another partner's file never carries the same value.

    Raises UnicodeEncodeError for a value with lone surrogates."""
    return pseudonymizer(partner_id, name, key=key)(value)


@dataclass(frozen=True)
class ExportPlanner:
    """Attribute-estimation exports (jobs of kind attribute_export, no destination)."""

    subject_key: Callable[[str], str]  # the keyed pseudonym of a subject id, for the log
    pseudonym_key: bytes = field(repr=False)  # the current pseudonymization key, for hmac
    new_id: Callable[[], str]  # delivery ids: the recipient's idempotency keys
    default_region: str

    @property
    def kind(self) -> PartnerKind:
        return PartnerKind.ATTRIBUTE_EXPORT

    def check(self, request: JobRequest, contract: PartnerContract) -> None:
        """Raises ValidationFailed for a destination (exports have none) or a contract with
        no [export] format (contract validation already refuses one)."""
        if request.destination is not None:
            detail = "an export goes to the contract's endpoint: no destination"
            raise ValidationFailed(
                "unexpected destination", errors=[FieldError("/destination", detail)]
            )
        if contract.export is None:
            detail = "the contract designates no file format ([export])"
            raise ValidationFailed("no export format", errors=[FieldError("/partner", detail)])

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
        assert contract.export is not None, "checked by check()"
        ctx = _Export(
            job_id=job.job_id,
            transfer_id=job.transfer_id,
            contract=contract,
            fmt=contract.export,
            request=request,
            transforms=contract.purposes[request.purpose].fields,
            planner=self,
            decisions=DecisionCache(),
            known=_known_fields(contract),
            pseudonyms={
                name: pseudonymizer(contract.id, name, key=self.pseudonym_key)
                for name in contract.export.columns
            },
        )
        return (yield from _plan(ctx, lines, states, now, done=done, last=last))


def _known_fields(contract: PartnerContract) -> frozenset[str]:
    """The field names the gateway itself knows: the contract's (any purpose), the identifier
    profile's and the per-person names. A rejection may name one of these; any other key is
    the caller's own text (an email, a name) and is not repeated."""
    named = {name for purpose in contract.purposes.values() for name in purpose.fields}
    return frozenset(named) | KINDS | PER_PERSON_NAMES


@dataclass(frozen=True)
class _Export:
    """What every record of one chunk shares."""

    job_id: str
    transfer_id: str
    contract: PartnerContract
    fmt: ExportFormat
    request: JobRequest
    transforms: Mapping[str, Transform]
    planner: ExportPlanner
    decisions: DecisionCache  # policy.decide, once per kind of person in the chunk
    known: frozenset[str]  # field names a rejection may quote (_known_fields)
    pseudonyms: Mapping[str, Callable[[str], str]]  # column -> its keyed pseudonym


@dataclass
class _Row:
    decision: Decision
    data: bytes  # the encoded row: exactly what the file carries for this person
    sha: str
    key: str = ""


def _plan(
    ctx: _Export,
    lines: Sequence[tuple[int, object]],
    states: Mapping[str, SubjectState],
    now: datetime,
    *,
    done: int,
    last: bool,
) -> Steps[ChunkPlan]:
    plan = ChunkPlan()
    denied_entries = _entries(ctx, Outcome.DENIED, now)
    rows: list[_Row] = []
    denied: list[LeafRecord] = []
    for line, raw in lines:
        record = _checked(ctx.fmt, ctx.known, line, raw, plan.rejections)
        if record is None:
            plan.count("invalid")
            continue
        subject = record["subject_id"]
        state = states.get(subject) or SubjectState(subject_id=subject)
        outcome = _one(ctx, line, record, state, now, plan.rejections)
        key = ctx.planner.subject_key(subject)
        if isinstance(outcome, _Row):
            outcome.key = key
            rows.append(outcome)
            plan.count("allowed")
        elif isinstance(outcome, Decision):
            denied.append(denied_entries.record(outcome, subject_key=key))
            plan.count("denied")
        else:  # allowed, but the row cannot be written in the designated encoding
            decision, reasons = outcome
            denied.append(denied_entries.record(decision, subject_key=key, reasons=reasons))
            plan.count("invalid")
        yield
    if rows:
        yield from _queue(ctx, plan, _entries(ctx, Outcome.ALLOWED, now), rows, now)
    return plan.close(ctx.job_id, denied, done=done, last=last, now=now)


def _entries(ctx: _Export, outcome: Outcome, now: datetime) -> TransferEntries:
    return TransferEntries(
        contract=ctx.contract, outcome=outcome, transfer_id=ctx.transfer_id, time=now
    )


def _queue(
    ctx: _Export, plan: ChunkPlan, entries: TransferEntries, rows: Sequence[_Row], now: datetime
) -> Steps[None]:
    """One file (header and rows) for `rows`, and their entries, contiguous in the append."""
    head = header_bytes(ctx.fmt) if ctx.fmt.header else b""
    yield from plan.request(
        (entries.record(r.decision, subject_key=r.key, payload_sha256=r.sha) for r in rows),
        subjects=tuple((r.decision.subject_id, r.key, r.sha) for r in rows),
        delivery_id=ctx.planner.new_id(),
        job_id=ctx.job_id,
        partner_id=ctx.contract.id,
        operation=OPERATION,
        transfer_id=ctx.transfer_id,
        purpose=ctx.request.purpose,
        legal_basis=ctx.request.legal_basis.value,
        content_type=content_type(ctx.fmt),
        payload=head + b"".join(r.data for r in rows),
        now=now,
    )


def _checked(
    fmt: ExportFormat, known: frozenset[str], line: int, raw: object, rejections: list[Rejection]
) -> dict[str, str] | None:
    """The record (subject_id and its non-empty columns, as strings) if it has the shape of
    one; else None, with the rejection noted. A key that is not a column rejects the record
    even when its value is null or empty; it is named only if it is in `known`."""

    def reject(code: str, name: str | None, message: str) -> None:
        rejections.append(Rejection(line, subject, code, name, message))

    found = subject_record(line, raw, rejections)
    if found is None:
        return None
    subject, fields = found
    record = {"subject_id": subject}
    for name, value in fields.items():
        if name == "subject_id":
            continue
        if name not in fmt.columns:
            if name in known:
                reject("unknown_field", name, "this field is not a column of the partner's file")
            else:  # the caller's text, maybe an email or a name: not stored, not listed
                reject("unknown_field", None, _UNNAMED_FIELD)
            return None
        if value is None or value == "":
            continue
        # A year may come as a JSON number; true/false is not one (bool is an int in Python).
        if isinstance(value, bool) or not isinstance(value, str | int):
            reject("invalid_type", name, "must be a string (or an integer)")
            return None
        if isinstance(value, str) and not _is_unicode(value):
            reject("invalid_text", name, "holds a lone surrogate: not a character")
            return None
        record[name] = str(value)
    return record


def _is_unicode(value: str) -> bool:
    """False for a string with lone surrogates (JSON "\\ud800"): no encoding writes it."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _one(
    ctx: _Export,
    line: int,
    record: dict[str, str],
    state: SubjectState,
    now: datetime,
    rejections: list[Rejection],
) -> _Row | Decision | tuple[Decision, tuple[dict[str, str], ...]]:
    """The record's fate: its row; the decision to record as denied; or an allowed decision
    whose row cannot be written, to record as not sent with the reasons."""
    subject = record["subject_id"]
    request = ctx.request
    fields = tuple(name for name in record if name != "subject_id")
    item = ProvisionItem(
        subject_id=subject, purpose=request.purpose, legal_basis=request.legal_basis, fields=fields
    )
    decision = ctx.decisions.decide(item, ctx.contract, state, now)
    if not decision.allowed:
        code = decision.reasons[0].code if decision.reasons else "denied"
        message = "; ".join(r.message for r in decision.reasons) or "denied by policy"
        rejections.append(Rejection(line, subject, code, None, message))
        return decision
    values = _transformed(ctx, line, record, decision, rejections)
    try:
        data = encode_row(values, ctx.fmt)
    except UnencodableValue as exc:
        message = f"cannot be written exactly in {exc.encoding}: the record is not exported"
        rejections.append(Rejection(line, subject, "unencodable_value", exc.column, message))
        reasons = ({"code": "unencodable_value", "message": str(exc), "rule": "R1"},)
        return decision.model_copy(update={"allowed": False, "fields_sent": ()}), reasons
    sent = tuple(name for name in decision.fields_sent if name in values)
    if sent != decision.fields_sent:  # the log lists what was sent, never more
        decision = decision.model_copy(update={"fields_sent": sent})
    return _Row(decision, data, hashlib.sha256(data).hexdigest())


def _transformed(
    ctx: _Export,
    line: int,
    record: dict[str, str],
    decision: Decision,
    rejections: list[Rejection],
) -> dict[str, str]:
    """Column -> value for the allowed fields, transformed as the purpose says; a value that
    does not normalize is left out and reported."""
    out: dict[str, str] = {}
    for name in decision.fields_sent:
        if name not in ctx.fmt.columns:
            continue  # not in the designated file: not sent
        result = _value(ctx, name, record[name], ctx.transforms[name])
        if isinstance(result, Rejected):
            subject = record["subject_id"]
            rejections.append(Rejection(line, subject, result.code.value, name, result.message))
            continue
        out[name] = result
    return out


def _value(ctx: _Export, name: str, value: str, transform: Transform) -> str | Rejected:
    """What the file carries for one field. Raises nothing for any value."""
    if transform is Transform.PREHASHED:
        return normalize_prehashed(value, name)
    normalized = value
    if name in KINDS:
        result = normalize(name, value, default_region=ctx.planner.default_region)
        if isinstance(result, Rejected):
            return result
        normalized = result.value
    if transform is Transform.SHA256:
        return normalized if name in PREHASHED_KINDS else sha256_hex(normalized)
    if transform is Transform.HMAC:
        return ctx.pseudonyms[name](normalized)
    return normalized
