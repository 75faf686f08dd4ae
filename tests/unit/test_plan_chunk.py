"""plan_chunk, the customer-match planner, against a plain reference planner.

The reference below plans a chunk the straightforward way, one record at a time with the
general tools only: `policy.decide` for every record, `normalize_and_hash` for every value, a
`Member` and `member_bytes` per person, `TransferEntries.record` per entry. plan_chunk takes
shortcuts (decisions cached per kind of person, per-shape field plans, members written
straight to bytes); on generated chunks both must give the same plan, byte for byte: entries,
outbox payloads and meta, rejections in order, counts in order.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway import pseudonym
from gateway.adapters import InvalidMember
from gateway.adapters.customer_match import (
    MAX_MEMBERS,
    ConsentFlags,
    Member,
    encode_ingest_parts,
    member_bytes,
    payload_sha256,
    unsent_fields,
)
from gateway.consent import SUBJECT_ID_PATTERN
from gateway.contracts import PartnerContract, load_contracts
from gateway.delivery.outbox import DeliveryMeta, OutboxRow, Rejection
from gateway.identifiers import Rejected, normalize_and_hash
from gateway.ledger.entries import Outcome
from gateway.ledger.store import LeafRecord
from gateway.ledger.templates import TransferEntries
from gateway.models import (
    ConsentAction,
    ConsentEvent,
    Discontinuance,
    LegalBasis,
    SubjectState,
    Transform,
)
from gateway.policy import Decision, ProvisionItem, decide
from gateway.provisions.customer_match import (
    RECORD_FIELDS,
    ChunkPlan,
    UploadContext,
    plan_chunk,
)

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
GOOGLE = load_contracts(REPO / "partners", NOW.date())["google-customer-match"]
PURPOSE = "ad_customer_match"
PERSONALIZATION = "ad_personalization"
SUBJECTS = tuple(f"cust-{n}" for n in range(6))


def _variant(fields: dict[str, Transform], personalization: str | None) -> PartnerContract:
    purpose = GOOGLE.purposes[PURPOSE].model_copy(update={"fields": fields})
    destinations = {
        name: d.model_copy(update={"personalization_purpose": personalization})
        for name, d in GOOGLE.destinations.items()
    }
    return GOOGLE.model_copy(update={"purposes": {PURPOSE: purpose}, "destinations": destinations})


# The shipped contract, and odd but loadable ones: fields in another order, a clear email, a
# hashed region, an hmac field, no personalization purpose.
CONTRACTS = (
    GOOGLE,
    _variant({"phone": Transform.SHA256, "email": Transform.SHA256}, None),
    _variant(
        {
            "email": Transform.CLEAR,
            "phone": Transform.HMAC,
            "region_code": Transform.SHA256,
            "given_name": Transform.SHA256,
            "family_name": Transform.CLEAR,
            "postal_code": Transform.CLEAR,
            "email_sha256": Transform.PREHASHED,
        },
        PERSONALIZATION,
    ),
    _variant(
        {
            "email_sha256": Transform.PREHASHED,
            "given_name": Transform.SHA256,
            "family_name": Transform.SHA256,
            "region_code": Transform.CLEAR,
            "postal_code": Transform.CLEAR,
            "phone_sha256": Transform.PREHASHED,
            "email": Transform.SHA256,
        },
        PERSONALIZATION,
    ),
)

HEX = "0123456789abcdef" * 4
VALUES: dict[str, list[object]] = {
    "email": [
        "Person.1@Example.com",
        " dana@example.com ",
        "cloudy.San+x@GMAIL.com",
        "+x@gmail.com",
        "no-at-sign",
        "a@b",
        "José@例え.jp",
        "",
        None,
        5,
    ],
    "phone": [
        "09012345678",
        "090-1234-5678",
        "+1 800-555-0100",
        "0012025550123",
        "０９０１２３４５６７８",
        "12",
        "abc",
        "",
        None,
    ],
    "given_name": ["Dana", " Ünal ", "!!", ""],
    "family_name": ["Smith", "O'Brien", "..."],
    "region_code": ["US", "jp", "XX", ""],
    "postal_code": ["94045", "9404", "100-0001", " 12 ", 'a"b'],
    "email_sha256": [HEX, HEX.upper(), "f" * 63, "not a hash"],
    "phone_sha256": [HEX[::-1], "xyz"],
    "shoe": ["44"],
}


def one_in(n: int) -> st.SearchStrategy[bool]:
    """True about once in `n` draws (st.integers would favour its bounds)."""
    return st.sampled_from([True] + [False] * (n - 1))


@st.composite
def raw_records(draw: st.DrawFn) -> object:
    kind = draw(st.sampled_from([3] * 17 + [0, 1, 2]))
    if kind == 0:
        return "line is not valid JSON"  # a reader's error text
    if kind == 1:
        return ["not", "an", "object"]
    record: dict[str, object] = {}
    subject = draw(st.sampled_from([*SUBJECTS * 4, "", "bad id", 7]))
    if kind != 2:
        record["subject_id"] = subject
    names = draw(st.lists(st.sampled_from(sorted(VALUES)), max_size=5, unique=True))
    for name in names:
        if name == "shoe" and not draw(one_in(8)):  # an unknown field sinks the record
            continue
        record[name] = draw(st.sampled_from(VALUES[name]))
    if draw(one_in(2)):  # the common case: email and phone, both fine
        record.update(email="Person.9@Example.com", phone="090-1111-2222")
    return record


instants = st.sampled_from(
    [NOW - timedelta(days=400), NOW - timedelta(days=1), NOW, NOW + timedelta(hours=1)]
)


@st.composite
def consent_events(draw: st.DrawFn, subject: str, purpose: str) -> ConsentEvent:
    if draw(st.booleans()):  # a plain grant, in effect, with all its evidence
        return ConsentEvent(
            subject_id=subject,
            purpose=purpose,
            action=ConsentAction.GRANT,
            effective_at=draw(st.sampled_from([NOW - timedelta(days=3), NOW - timedelta(days=9)])),
            notice_version=draw(st.sampled_from(["pn-1", "pn-2"])),
            channel="web",
            foreign_disclosure_version="us-google-2025-04",
            recorded_at=NOW,
            recorded_by="t",
        )
    return ConsentEvent(
        subject_id=draw(st.sampled_from([subject, subject, subject, "other"])),
        purpose=purpose,
        action=draw(st.sampled_from([ConsentAction.GRANT] * 3 + [ConsentAction.WITHDRAW])),
        effective_at=draw(instants),
        notice_version=draw(st.sampled_from(["pn-1", "pn-2", " ", None])),
        channel=draw(st.sampled_from(["web", "app", None])),
        foreign_disclosure_version=draw(st.sampled_from(["us-google-2025-04", "old", None])),
        recorded_at=NOW,
        recorded_by="t",
    )


@st.composite
def subject_states(draw: st.DrawFn) -> dict[str, SubjectState]:
    states: dict[str, SubjectState] = {}
    for subject in SUBJECTS:
        if draw(one_in(6)):
            continue  # no history at all: not in the mapping
        consents = {}
        for purpose in (PURPOSE, PERSONALIZATION):
            if not draw(one_in(6)):
                consents[purpose] = draw(consent_events(subject, purpose))
        stops: tuple[Discontinuance, ...] = ()
        if draw(one_in(10)):
            stop = Discontinuance(
                subject_id=subject,
                partners=draw(st.sampled_from([None, (GOOGLE.id,), ("someone-else",)])),
                reason="r",
                requested_at=draw(instants),
                recorded_by="t",
            )
            stops = (stop,)
        owner = draw(st.sampled_from([subject] * 9 + ["other"]))
        states[subject] = SubjectState(subject_id=owner, consents=consents, discontinuances=stops)
    return states


def context(contract: PartnerContract, region: str) -> UploadContext:
    ids = itertools.count()
    return UploadContext(
        job_id="job-1",
        transfer_id="transfer-1",
        contract=contract,
        destination=contract.destinations["default"],
        purpose=PURPOSE,
        legal_basis=LegalBasis.CONSENT,
        default_region=region,
        subject_key=partial(pseudonym.subject_key, key_id="k1", key=b"secret" * 6),
        new_id=lambda: f"delivery-{next(ids)}",
    )


def without_entry_id(record: LeafRecord) -> LeafRecord:
    """The record with its entry id (random, per entry) blanked out, in the leaf too."""
    leaf = record.leaf.replace(record.entry_id.encode(), b"(entry id)")
    return record._replace(leaf=leaf, leaf_hash=b"", entry_id="")


def planned(
    planner: Callable[..., ChunkPlan],
    contract: PartnerContract,
    region: str,
    lines: Sequence[tuple[int, object]],
    states: Mapping[str, SubjectState],
) -> tuple[Any, ...]:
    plan = planner(context(contract, region), lines, states, NOW, done=len(lines), last=True)
    records = [without_entry_id(r) for r in plan.records]
    return records, plan.writes, plan.rejections, list(plan.counts.items())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(raw_records(), max_size=30),
    subject_states(),
    st.sampled_from(CONTRACTS),
    st.sampled_from(["JP", "US"]),
)
def test_plan_chunk_equals_the_reference_planner(
    raws: list[object],
    states: dict[str, SubjectState],
    contract: PartnerContract,
    region: str,
) -> None:
    lines = list(enumerate(raws, start=1))
    expected = planned(reference_plan, contract, region, lines, states)
    assert planned(plan_chunk, contract, region, lines, states) == expected


def _grant(subject_id: str) -> ConsentEvent:
    """A current grant for the Customer Match purpose, with the foreign disclosure Google needs."""
    return ConsentEvent(
        subject_id=subject_id,
        purpose=PURPOSE,
        action=ConsentAction.GRANT,
        effective_at=NOW - timedelta(days=3),
        notice_version="pn-1",
        channel="web",
        foreign_disclosure_version="us-google-2025-04",
        recorded_at=NOW,
        recorded_by="t",
    )


def test_the_common_case_is_planned_as_the_reference_does() -> None:
    """Allowed people with an email and a phone (some without a phone), consent granted: the
    bulk upload's shape, more than one request's worth, in both consent groups."""
    grant = _grant("s")
    lines: list[tuple[int, object]] = []
    states: dict[str, SubjectState] = {}
    for n in range(MAX_MEMBERS + 1500):
        subject = f"cust-{n}"
        phone = "" if n % 10 == 0 else f"090{n:08d}"
        lines.append(
            (n + 1, {"subject_id": subject, "email": f"P.{n}@Example.com", "phone": phone})
        )
        consents = {PURPOSE: grant.model_copy(update={"subject_id": subject})}
        if n % 10 == 3:
            consents[PERSONALIZATION] = grant.model_copy(
                update={"subject_id": subject, "purpose": PERSONALIZATION}
            )
        states[subject] = SubjectState(subject_id=subject, consents=consents)
    expected = planned(reference_plan, GOOGLE, "JP", lines, states)
    assert planned(plan_chunk, GOOGLE, "JP", lines, states) == expected
    assert len([w for w in expected[1] if isinstance(w, OutboxRow)]) == 3


# --- the reference planner: one record at a time, the general tools only -------------------

_MEMBER_FIELD = {"email_sha256": "email", "phone_sha256": "phone"}
_UNUSABLE = (
    {
        "code": "no_identifier",
        "message": "No identifier Google can match was left after normalization.",
        "rule": "R1",
    },
)


def reference_plan(
    ctx: UploadContext,
    lines: Sequence[tuple[int, object]],
    states: Mapping[str, SubjectState],
    now: datetime,
    *,
    done: int,
    last: bool,
) -> ChunkPlan:
    plan = ChunkPlan()
    entries = TransferEntries(
        contract=ctx.contract, outcome=Outcome.ALLOWED, transfer_id=ctx.transfer_id, time=now
    )
    denied_entries = TransferEntries(
        contract=ctx.contract, outcome=Outcome.DENIED, transfer_id=ctx.transfer_id, time=now
    )
    allowed: dict[ConsentFlags, list[tuple[Decision, bytes, str, str]]] = {}
    denied: list[LeafRecord] = []
    for line, raw in lines:
        record = _checked(line, raw, plan.rejections)
        if record is None:
            plan.count("invalid")
            continue
        subject = record["subject_id"]
        state = states.get(subject) or SubjectState(subject_id=subject)
        outcome = _one(ctx, line, record, state, now, plan.rejections)
        key = ctx.subject_key(subject)
        if isinstance(outcome, tuple) and len(outcome) == 3:
            decision, part, sha = outcome
            allowed.setdefault(_flags(ctx, state), []).append((decision, part, sha, key))
            plan.count("allowed")
        elif isinstance(outcome, Decision):
            denied.append(denied_entries.record(outcome, subject_key=key))
            plan.count("denied")
        else:
            denied.append(denied_entries.record(outcome[0], subject_key=key, reasons=_UNUSABLE))
            plan.count("denied")  # nothing Google can match: denied, as logged
    for flags in sorted(allowed):
        members = allowed[flags]
        for start in range(0, len(members), MAX_MEMBERS):
            batch = members[start : start + MAX_MEMBERS]
            offset = len(plan.records)
            for decision, _, sha, key in batch:
                plan.records.append(entries.record(decision, subject_key=key, payload_sha256=sha))
            meta = DeliveryMeta(
                purpose=ctx.purpose,
                legal_basis=ctx.legal_basis.value,
                subjects=tuple((d.subject_id, key, sha) for d, _, sha, key in batch),
            )
            plan.writes.append(
                OutboxRow(
                    delivery_id=ctx.new_id(),
                    job_id=ctx.job_id,
                    partner_id=ctx.contract.id,
                    operation="ingest",
                    transfer_id=ctx.transfer_id,
                    entries_offset=offset,
                    entry_count=len(batch),
                    content_type="application/json",
                    payload=encode_ingest_parts(ctx.destination, [b[1] for b in batch], flags),
                    meta=meta.encode(),
                    created_at=now,
                )
            )
    return plan.close(ctx.job_id, denied, done=done, last=last, now=now)


def _checked(line: int, raw: object, rejections: list[Rejection]) -> dict[str, str] | None:
    subject = raw.get("subject_id") if isinstance(raw, dict) else None
    if not (isinstance(subject, str) and SUBJECT_ID_PATTERN.fullmatch(subject)):
        subject = None
    if isinstance(raw, str):
        rejections.append(Rejection(line, subject, "malformed_record", None, raw))
        return None
    if not isinstance(raw, dict):
        message = "a record must be an object"
        rejections.append(Rejection(line, subject, "malformed_record", None, message))
        return None
    if subject is None:
        message = "subject_id is missing or malformed"
        rejections.append(Rejection(line, None, "invalid_subject_id", "subject_id", message))
        return None
    record = {"subject_id": subject}
    for name, value in raw.items():
        if name == "subject_id":
            continue
        if name not in RECORD_FIELDS:  # never named: the key may be personal data
            message = (
                "a field that is not part of a customer-match record (not named here: a key "
                f"may itself be personal data); the fields are: {', '.join(RECORD_FIELDS)}"
            )
            rejections.append(Rejection(line, subject, "unknown_field", None, message))
            return None
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            rejections.append(Rejection(line, subject, "invalid_type", name, "must be a string"))
            return None
        record[name] = value
    return record


def _one(
    ctx: UploadContext,
    line: int,
    record: dict[str, str],
    state: SubjectState,
    now: datetime,
    rejections: list[Rejection],
) -> tuple[Decision, bytes, str] | Decision | tuple[Decision]:
    subject = record["subject_id"]
    item = ProvisionItem(
        subject_id=subject,
        purpose=ctx.purpose,
        legal_basis=ctx.legal_basis,
        fields=tuple(f for f in RECORD_FIELDS if f in record),
    )
    decision = decide(item, ctx.contract, state, now)
    if not decision.allowed:
        code = decision.reasons[0].code if decision.reasons else "denied"
        message = " ".join(r.message for r in decision.reasons if r.code) or "denied by policy"
        rejections.append(Rejection(line, subject, code, None, message))
        return decision
    values, dropped = _transformed(ctx, line, record, decision, rejections)
    member = Member(subject_id=subject, **values)
    try:
        part = member_bytes(member)
    except InvalidMember as exc:
        message = f"{exc}: nothing Google can match is left"
        rejections.append(Rejection(line, subject, "no_identifier", None, message))
        return (decision.model_copy(update={"allowed": False, "fields_sent": ()}),)
    if unsent := unsent_fields(member):  # given, but an address goes only whole
        message = (
            f"{', '.join(unsent)} not sent: an address is sent only whole, with given_name, "
            "family_name, region_code and postal_code all given, valid and allowed by the "
            "contract"
        )
        rejections.append(Rejection(line, subject, "address_incomplete", unsent[0], message))
    sent_fields = {f for f in ("email", "phone") if getattr(member, f) is not None}
    address = ("given_name", "family_name", "region_code", "postal_code")
    if all(getattr(member, f) is not None for f in address):
        sent_fields.update(address)
    sent = tuple(
        f
        for f in decision.fields_sent
        if _MEMBER_FIELD.get(f, f) in sent_fields and f not in dropped
    )
    if sent != decision.fields_sent:
        decision = decision.model_copy(update={"fields_sent": sent})
    return decision, part, payload_sha256(part)


def _transformed(
    ctx: UploadContext,
    line: int,
    record: dict[str, str],
    decision: Decision,
    rejections: list[Rejection],
) -> tuple[dict[str, str], set[str]]:
    """The member's values by Member field, and the fields not sent for their own sake
    (refused, or pre-hashed with the raw twin sent: raw fields go first)."""
    transforms = ctx.contract.purposes[ctx.purpose].fields
    region = record.get("region_code")
    out: dict[str, str] = {}
    dropped: set[str] = set()
    raw_first = [f for f in decision.fields_sent if f not in _MEMBER_FIELD]
    raw_first += [f for f in decision.fields_sent if f in _MEMBER_FIELD]
    for name in raw_first:
        target = _MEMBER_FIELD.get(name, name)
        if transforms[name] is Transform.HMAC:
            continue
        subject = record["subject_id"]
        if target in out:
            message = (
                f"not sent: {target} was given too and was sent; give {target} or {name}, not both"
            )
            rejections.append(Rejection(line, subject, "identifier_given_twice", name, message))
            dropped.add(name)
            continue
        result = normalize_and_hash(
            name, record[name], region=region, default_region=ctx.default_region
        )
        if isinstance(result, Rejected):
            rejections.append(Rejection(line, subject, result.code.value, name, result.message))
            dropped.add(name)
            continue
        clear = transforms[name] is Transform.CLEAR
        out[target] = result.normalized if clear else str(result.sha256)
    return out, dropped


def _flags(ctx: UploadContext, state: SubjectState) -> ConsentFlags:
    purpose = ctx.destination.personalization_purpose
    if purpose is None:
        return (True, False)
    event = state.consents.get(purpose)
    return (True, event is not None and event.action is ConsentAction.GRANT)


def test_what_an_allowed_record_does_not_send_is_reported() -> None:
    """Address parts without a whole address, and the pre-hashed twin of a raw identifier
    (the raw one wins even where the contract lists the pre-hashed field first): each one
    a rejection, and the log's items list only what was sent."""
    subject = "cust-1"
    states = {subject: SubjectState(subject_id=subject, consents={PURPOSE: _grant(subject)})}
    lines: list[tuple[int, object]] = [
        (1, {"subject_id": subject, "email": "a@b.com", "given_name": "Only"}),
        (2, {"subject_id": subject, "email": "a@b.com", "email_sha256": HEX}),
        (3, {"subject_id": subject, "email": "no-at-sign", "email_sha256": HEX}),
        (5, {"subject_id": subject, "email": "a@b.com", "region_code": "JP",
             "postal_code": "100-0001", "family_name": "!!"}),
    ]  # fmt: skip
    for contract in (GOOGLE, CONTRACTS[3]):  # CONTRACTS[3] lists email_sha256 before email
        plan = planned(plan_chunk, contract, "JP", lines, states)
        assert plan == planned(reference_plan, contract, "JP", lines, states)
        records, _, rejections, counts = plan
        assert [(r.line, r.code, r.field) for r in rejections] == [
            (1, "address_incomplete", "given_name"),
            (2, "identifier_given_twice", "email_sha256"),
            (3, "invalid_email", "email"),
            (5, "empty", "family_name"),
            (5, "address_incomplete", "region_code"),
        ]
        assert rejections[0].message.startswith("given_name not sent: an address is sent only")
        assert rejections[4].message.startswith("region_code, postal_code not sent")
        assert counts == [("allowed", 4)]
        items = [[i["field"] for i in json.loads(r.leaf)["items"]] for r in records]
        assert items == [["email"], ["email"], ["email_sha256"], ["email"]]
