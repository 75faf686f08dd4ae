"""TransferEntries builds, byte for byte, what to_record(provision_entry(...)) builds."""

from __future__ import annotations

import itertools
import os
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from time import sleep, time_ns
from typing import Any, TypeAlias

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.contracts import PartnerContract, load_contract
from gateway.ledger.canonical import CanonicalizationError
from gateway.ledger.entries import (
    Outcome,
    RecordingMethod,
    outcome_entry,
    provision_entry,
    to_record,
)
from gateway.ledger.entry_ids import random_uuid, time_uuid
from gateway.ledger.store import LeafRecord
from gateway.ledger.templates import EntryTemplates, OutcomeEntries, TransferEntries
from gateway.models import ConsentAction, ConsentEvent, LegalBasis, SubjectState
from gateway.policy import Decision, ProvisionItem, Reason, decide

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
JST = timezone(timedelta(hours=9))
PURPOSE = "ad_customer_match"
FIELDS = ("email", "phone", "given_name", "region_code", "postal_code", "shoe_size")


def contract() -> PartnerContract:
    return load_contract(REPO / "partners" / "google-customer-match.toml", NOW.date())


def decision(subject: str, fields: tuple[str, ...], consented: bool) -> Decision:
    consents = {}
    if consented:
        consents[PURPOSE] = ConsentEvent(
            subject_id=subject,
            purpose=PURPOSE,
            action=ConsentAction.GRANT,
            effective_at=NOW,
            notice_version="pn-2026-04",
            channel="web",
            foreign_disclosure_version="us-google-2025-04",
            recorded_at=NOW,
            recorded_by="import:crm",
        )
    item = ProvisionItem(
        subject_id=subject, purpose=PURPOSE, legal_basis=LegalBasis.CONSENT, fields=fields
    )
    return decide(item, contract(), SubjectState(subject_id=subject, consents=consents), NOW)


# Any Unicode but lone surrogates; often ASCII alone, where a quote, backslash or control is
# the one character that needs escaping.
text = st.text(st.characters(codec="utf-8"), max_size=30) | st.text(
    st.characters(max_codepoint=0x7F), max_size=30
)
payloads = st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True) | text
# Any instant, in any offset: a template made at one time serves transfers at every other.
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=st.timezones()
)


@settings(max_examples=150, deadline=None)
@given(
    subject=st.from_regex(r"[A-Za-z0-9._:@-]{1,40}", fullmatch=True) | text,
    fields=st.lists(st.sampled_from(FIELDS), min_size=1, unique=True).map(tuple),
    consented=st.booleans(),
    key=text,
    payload=payloads,
    evidence_value=text,
    entry_id=text,
    outcome=st.sampled_from(Outcome),
    method=st.sampled_from(RecordingMethod),
    transfer_id=st.from_regex(r"[0-9a-f-]{36}", fullmatch=True) | text,
    time=times,
)
def test_record_equals_the_general_builder(
    subject: str,
    fields: tuple[str, ...],
    consented: bool,
    key: str,
    payload: str | None,
    evidence_value: str,
    entry_id: str,
    outcome: Outcome,
    method: RecordingMethod,
    transfer_id: str,
    time: datetime,
) -> None:
    the_contract = contract()
    d = decision("s-1", fields, consented).model_copy(update={"subject_id": subject})
    if d.evidence:  # any string may stand in an evidence value: quotes, controls, emoji
        first = next(iter(d.evidence))
        d = d.model_copy(update={"evidence": {**d.evidence, first: evidence_value}})
    # An earlier transfer made the template, at another time with another id.
    earlier = TransferEntries(
        contract=the_contract, outcome=outcome, transfer_id="t-0", time=NOW, method=method
    )
    common = {"outcome": outcome, "transfer_id": transfer_id, "time": time, "method": method}
    entries = TransferEntries(contract=the_contract, **common)  # type: ignore[arg-type]
    assert entries.shape(d) is earlier.shape(d)
    want = to_record(
        provision_entry(
            decision=d,
            contract=the_contract,
            entry_id=entry_id,
            subject_key=key,
            payload_sha256=payload,
            **common,  # type: ignore[arg-type]
        )
    )
    for _ in range(2):  # the second call takes the template of the decision before
        got = entries.record(d, subject_key=key, payload_sha256=payload, entry_id=entry_id)
        assert got == want
        shaped = entries.record_shaped(
            entries.shape(d),
            subject_id=d.subject_id,
            subject_key=key,
            evidence=d.evidence,
            payload_sha256=payload,
            entry_id=entry_id,
        )
        assert shaped == want


def test_reasons_override_and_shapes_do_not_mix() -> None:
    entries = TransferEntries(
        contract=contract(), outcome=Outcome.FAILED, transfer_id="t", time=NOW
    )
    d = decision("s-1", ("email",), True)
    failed = [{"code": "partner_rejected", "message": "The partner refused the batch."}]
    one = entries.record(d, subject_key="k", reasons=failed, entry_id="e1")
    two = entries.record(d, subject_key="k", entry_id="e2")
    assert b"partner_rejected" in one.leaf
    assert b"partner_rejected" not in two.leaf
    assert (
        one.leaf
        == to_record(
            provision_entry(
                decision=d,
                contract=contract(),
                outcome=Outcome.FAILED,
                transfer_id="t",
                entry_id="e1",
                time=NOW,
                subject_key="k",
                reasons=failed,
            )
        ).leaf
    )


def test_entry_ids_are_fresh_unless_given() -> None:
    entries = TransferEntries(
        contract=contract(), outcome=Outcome.ALLOWED, transfer_id="t", time=NOW
    )
    d = decision("s-1", ("email",), True)
    ids = {entries.record(d, subject_key="k").entry_id for _ in range(50)}
    assert len(ids) == 50


def test_lone_surrogate_is_refused() -> None:
    entries = TransferEntries(
        contract=contract(), outcome=Outcome.ALLOWED, transfer_id="t", time=NOW
    )
    with pytest.raises(CanonicalizationError):
        entries.record(decision("s-1", ("email",), True), subject_key="\ud800")


def test_generated_entry_ids_are_rfc9562_version_4() -> None:
    entries = TransferEntries(
        contract=contract(), outcome=Outcome.ALLOWED, transfer_id="t", time=NOW
    )
    record = entries.record(decision("s-1", ("email",), True), subject_key="k")
    parsed = uuid.UUID(record.entry_id)
    assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
    assert str(parsed) == record.entry_id


@settings(max_examples=100, deadline=None)
@given(
    subject=text,
    key=text,
    payload=payloads,
    refers_to=st.integers(0, 2**53 - 1),
    outcome=st.sampled_from([Outcome.DELIVERED, Outcome.FAILED, Outcome.ALLOWED]),
    legal_basis=st.none() | st.sampled_from(["consent", "protect_life_body_property"]),
    with_reasons=st.booleans(),
)
def test_outcome_entries_equal_the_general_builder(
    subject: str,
    key: str,
    payload: str | None,
    refers_to: int,
    outcome: Outcome,
    legal_basis: str | None,
    with_reasons: bool,
) -> None:
    reasons = [{"code": "partner_rejected", "message": '100% refused: "bad"\n'}] * with_reasons
    common = {
        "contract": contract(),
        "purpose": PURPOSE,
        "legal_basis": legal_basis,
        "outcome": outcome,
        "operation": "ingest",
        "transfer_id": "t-1",
        "delivery_id": "d-1",
        "time": NOW,
        "reasons": reasons,
    }
    ids = iter(["e-1", "e-2"])
    entries = OutcomeEntries(**common, new_id=lambda: next(ids))  # type: ignore[arg-type]
    for entry_id in ("e-1", "e-2"):
        got = entries.record(
            subject_id=subject, subject_key=key, payload_sha256=payload, refers_to=refers_to
        )
        want = to_record(
            outcome_entry(
                **common,  # type: ignore[arg-type]
                entry_id=entry_id,
                subject_id=subject,
                subject_key=key,
                payload_sha256=payload,
                refers_to=refers_to,
            )
        )
        assert got == want


FAILED = ({"code": "partner_rejected", "message": "The partner refused the batch."},)
OTHER_FAILED = ({"code": "partner_timeout", "message": "The partner did not answer."},)


Request: TypeAlias = tuple[tuple[str, ...], bool]  # fields, consented
# Allowed, denied, fewer fields, a field the contract does not list.
REQUESTS: tuple[Request, ...] = (
    (("email", "phone"), True),
    (("email", "phone"), False),
    (("email",), True),
    (("email", "shoe_size"), True),
)
BASES = {request: decision("base", *request) for request in REQUESTS}


def shared_changes(base: Decision) -> dict[str, Any]:
    """Another value for each value a decision's entries share, where `base` allows it: not
    decisions `decide` would make, but ones TransferEntries must record as faithfully."""
    other: dict[str, Any] = {
        "fields_dropped": (*base.fields_dropped, "hat"),
        "rule_ids": (*base.rule_ids, "R9"),
        "cross_border_basis": None,
        "data_category": None,
        "reasons": (*base.reasons, Reason(code="extra", message="Extra.", rule="R9")),
        "legal_basis": LegalBasis.ENTRUSTMENT,
        "fields_sent": base.fields_sent[:1],
    }
    if not base.allowed:  # nothing sent: any purpose, and it may as well say allowed
        other |= {"purpose": "another_purpose", "allowed": True}
    return other


@st.composite
def tweaks(draw: st.DrawFn, base: Decision) -> dict[str, Any]:
    """Nothing, or one of `shared_changes(base)`."""
    other = shared_changes(base)
    name = draw(st.sampled_from([None, None, *sorted(other)]))
    return {} if name is None else {name: other[name]}


@st.composite
def people(draw: st.DrawFn) -> tuple[Decision, list[dict[str, str]] | None, str | None]:
    """A person's decision, of one of a few shapes: a copy of a base decision (its shared
    values the very same objects, as DecisionCache hands them out) or decided anew (equal
    values, other objects); its evidence the base's keys with the person's values, or one key
    renamed, dropped or added; and maybe a reasons override (a list of its own each time)."""
    request = draw(st.sampled_from(REQUESTS))
    subject = draw(st.from_regex(r"[a-z0-9-]{1,12}", fullmatch=True))
    base = decision(subject, *request) if draw(st.booleans()) else BASES[request]
    evidence = {k: draw(text) for k in base.evidence}
    change = draw(st.sampled_from(["same", "rename", "drop", "add"]))
    if change == "rename" and evidence:
        evidence[draw(st.sampled_from(["channel_", "zzz", "a"]))] = evidence.pop(
            draw(st.sampled_from(sorted(evidence)))
        )
    elif change == "drop" and evidence:
        del evidence[draw(st.sampled_from(sorted(evidence)))]
    elif change == "add":
        evidence[draw(st.sampled_from(["extra", "obtained_at_2"]))] = draw(text)
    d = base.model_copy(update={"subject_id": subject, "evidence": evidence, **draw(tweaks(base))})
    reasons = draw(st.sampled_from([None, None, FAILED, OTHER_FAILED]))
    payload = draw(payloads)
    return d, None if reasons is None else [dict(r) for r in reasons], payload


@settings(max_examples=100, deadline=None)
@given(st.lists(people(), min_size=1, max_size=12))
def test_shapes_in_any_order_do_not_mix(
    persons: list[tuple[Decision, list[dict[str, str]] | None, str | None]],
) -> None:
    """One TransferEntries, decisions of several shapes in any order: each entry is the general
    builder's, whichever template the entry before took."""
    the_contract = contract()
    entries = TransferEntries(
        contract=the_contract, outcome=Outcome.DENIED, transfer_id="t", time=NOW
    )
    for n, (d, reasons, payload) in enumerate(persons):
        got = entries.record(
            d, subject_key=f"k{n}", payload_sha256=payload, reasons=reasons, entry_id=f"e{n}"
        )
        want = to_record(
            provision_entry(
                decision=d,
                contract=the_contract,
                outcome=Outcome.DENIED,
                transfer_id="t",
                entry_id=f"e{n}",
                time=NOW,
                subject_key=f"k{n}",
                payload_sha256=payload,
                reasons=reasons,
            )
        )
        assert got == want


def variants(request: Request) -> dict[str, tuple[Decision, list[dict[str, str]] | None]]:
    """The base decision of `request` (with a reasons override, or none), and decisions that
    differ from it in one shared value or in the keys of the evidence."""
    base = BASES[request]

    def copy(**update: Any) -> Decision:
        return base.model_copy(update={"subject_id": "s-9", **update})

    out: dict[str, tuple[Decision, list[dict[str, str]] | None]] = {
        "same": (copy(), None),
        "decided anew": (decision("s-9", *request), None),
        "failed": (copy(), [dict(r) for r in FAILED]),
        "other failed": (copy(), [dict(r) for r in OTHER_FAILED]),
        "evidence key added": (copy(evidence={**base.evidence, "extra": "x"}), None),
    }
    out |= {name: (copy(**{name: value}), None) for name, value in shared_changes(base).items()}
    if base.evidence:
        first = min(base.evidence)
        renamed = {("zz" if k == first else k): v for k, v in base.evidence.items()}
        dropped = {k: v for k, v in base.evidence.items() if k != first}
        out["evidence key renamed"] = (copy(evidence=renamed), None)
        out["evidence key dropped"] = (copy(evidence=dropped), None)
    return out


@pytest.mark.parametrize("request_", REQUESTS)
def test_each_shared_value_tells_shapes_apart(request_: Request) -> None:
    """Every two decisions that differ in one shared value, the reasons override or the keys
    of the evidence, recorded one after the other and back: each entry is the general
    builder's, whichever template the entry before took."""
    found = variants(request_)
    the_contract = contract()
    for first, second in itertools.permutations(found, 2):
        entries = TransferEntries(
            contract=the_contract, outcome=Outcome.DENIED, transfer_id="t", time=NOW
        )
        for name in (first, second, first, first):  # the last takes the template before
            d, reasons = found[name]
            got = entries.record(d, subject_key="k", reasons=reasons, entry_id="e")
            want = to_record(
                provision_entry(
                    decision=d,
                    contract=the_contract,
                    outcome=Outcome.DENIED,
                    transfer_id="t",
                    entry_id="e",
                    time=NOW,
                    subject_key="k",
                    reasons=reasons,
                )
            )
            assert got == want, (first, second, name)


def test_a_decision_that_says_denied_is_not_given_an_allowed_template() -> None:
    """Fields sent but `allowed` False: the general builder finds no transforms for them and
    raises; so does TransferEntries after an allowed decision that is otherwise the same."""
    allowed = BASES[REQUESTS[0]]
    denied = allowed.model_copy(update={"allowed": False})
    the_contract = contract()
    entries = TransferEntries(
        contract=the_contract, outcome=Outcome.ALLOWED, transfer_id="t", time=NOW
    )
    entries.record(allowed, subject_key="k")
    common = {"outcome": Outcome.ALLOWED, "transfer_id": "t", "time": NOW, "entry_id": "e"}
    with pytest.raises(KeyError):
        provision_entry(decision=denied, contract=the_contract, subject_key="k", **common)  # type: ignore[arg-type]
    with pytest.raises(KeyError):
        entries.record(denied, subject_key="k")


def test_record_shaped_takes_any_evidence_but_only_its_own_shapes() -> None:
    common: dict[str, Any] = {
        "contract": contract(),
        "outcome": Outcome.ALLOWED,
        "transfer_id": "t",
        "time": NOW,
    }
    entries = TransferEntries(**common)
    d = decision("s-1", ("email",), True)
    shape = entries.shape(d)
    assert entries.shape(d.model_copy(update={"subject_id": "s-2"})) is shape
    later = TransferEntries(**(common | {"transfer_id": "t-2"}))  # the same kind of transfer
    got = later.record_shaped(shape, subject_id="s", subject_key="k", evidence=d.evidence)
    person = d.model_copy(update={"subject_id": "s"})
    want = provision_entry(
        decision=person, subject_key="k", entry_id=got.entry_id, **(common | {"transfer_id": "t-2"})
    )
    assert got == to_record(want)
    for other in (
        TransferEntries(**(common | {"outcome": Outcome.DELIVERED})),
        TransferEntries(**(common | {"method": RecordingMethod.COMBINED})),
        TransferEntries(**(common | {"contract": contract()})),  # an equal contract, reloaded
    ):
        with pytest.raises(ValueError, match="another contract, outcome or method"):
            other.record_shaped(shape, subject_id="s", subject_key="k", evidence=d.evidence)
    first = next(iter(d.evidence))
    renamed = {**d.evidence, "not_" + first: "x"}
    del renamed[first]
    for reasons in (None, [dict(r) for r in FAILED]):
        shape = entries.shape(d, reasons=reasons)
        for evidence in ({}, {**d.evidence, "extra": "x"}, renamed, d.evidence):
            got = entries.record_shaped(
                shape, subject_id="s", subject_key="k", evidence=evidence, entry_id="e"
            )
            person = d.model_copy(update={"subject_id": "s", "evidence": evidence})
            want = to_record(
                provision_entry(
                    decision=person, subject_key="k", reasons=reasons, entry_id="e", **common
                )
            )
            assert got == want


def test_records_are_immutable_leaf_records() -> None:
    entries = TransferEntries(
        contract=contract(), outcome=Outcome.ALLOWED, transfer_id="t", time=NOW
    )
    record = entries.record(decision("s-1", ("email",), True), subject_key="k")
    assert type(record) is LeafRecord
    with pytest.raises(AttributeError):
        record.subject_id = "s-2"  # type: ignore[misc]


@pytest.mark.parametrize("where", ["evidence", "subject_id", "payload"])
def test_lone_surrogate_anywhere_is_refused(where: str) -> None:
    d = decision("s-1", ("email",), True)
    entries = TransferEntries(
        contract=contract(), outcome=Outcome.ALLOWED, transfer_id="t", time=NOW
    )
    entries.record(d, subject_key="k")  # the template is there: the fast path refuses too
    if where == "evidence":
        d = d.model_copy(update={"evidence": dict.fromkeys(d.evidence, "\udfff")})
    if where == "subject_id":
        d = d.model_copy(update={"subject_id": "a\ud800b"})
    payload = "\ud800" if where == "payload" else None
    with pytest.raises(CanonicalizationError):
        entries.record(d, subject_key="k", payload_sha256=payload)


def test_random_uuids_are_rfc9562_version_4_and_random() -> None:
    ids = [random_uuid() for _ in range(4096)]  # more than one draw from os.urandom
    assert len(set(ids)) == len(ids)
    bits = [uuid.UUID(i) for i in ids]
    for parsed, spelled in zip(bits, ids, strict=True):
        assert (parsed.version, parsed.variant) == (4, uuid.RFC_4122)
        assert str(parsed) == spelled
    fixed = {48, 49, 50, 51, 64, 65}  # counted from the most significant bit: 122 random bits
    for bit in set(range(128)) - fixed:
        ones = sum(parsed.int >> (127 - bit) & 1 for parsed in bits)
        assert 0.4 * len(bits) < ones < 0.6 * len(bits), bit  # 12 standard deviations


def test_time_uuids_are_rfc9562_version_7_stamped_with_the_time() -> None:
    before = time_ns() // 1_000_000
    ids = [time_uuid() for _ in range(4096)]  # more than one draw of random bits
    after = time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    bits = [uuid.UUID(i) for i in ids]
    for parsed, spelled in zip(bits, ids, strict=True):
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert str(parsed) == spelled
        assert before <= parsed.int >> 80 <= after  # §5.7: unix_ts_ms, the first 48 bits
    # 74 random bits after the timestamp: all but the version (48-51) and variant (64-65)
    for bit in set(range(52, 128)) - {64, 65}:
        ones = sum(parsed.int >> (127 - bit) & 1 for parsed in bits)
        assert 0.4 * len(bits) < ones < 0.6 * len(bits), bit  # 12 standard deviations


def test_time_uuids_sort_in_the_order_they_were_made() -> None:
    made = []
    for _ in range(3):
        made.append(time_uuid())
        sleep(0.002)  # a later millisecond
    assert made == sorted(made)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_hand_out_its_parents_uuids() -> None:
    random_uuid()  # the parent holds a drawn, not yet handed out batch
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(write, " ".join(random_uuid() for _ in range(4)).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    parent = {random_uuid() for _ in range(512)}  # all the batch and the next
    assert len(child) == 4
    assert not child & parent


def test_outcome_entries_refuse_a_lone_surrogate() -> None:
    entries = OutcomeEntries(
        contract=contract(),
        purpose=PURPOSE,
        legal_basis="consent",
        outcome=Outcome.DELIVERED,
        operation="ingest",
        transfer_id="t",
        delivery_id="d",
        time=NOW,
    )
    with pytest.raises(CanonicalizationError):
        entries.record(subject_id="\ud800", subject_key="k", payload_sha256=None, refers_to=1)
    with pytest.raises(CanonicalizationError):  # as to_record(outcome_entry(...)) refuses it
        entries.record(subject_id="s", subject_key="k", payload_sha256=None, refers_to=2**53)


def test_templates_serve_every_transfer_of_their_kind_and_stay_bounded() -> None:
    """A template made at one time serves a transfer on 29 February (retained until 1 March
    three years on) and one in another offset; a full cache starts afresh."""
    the_contract = contract()
    templates = EntryTemplates(limit=2)
    d = decision("s-1", ("email", "phone"), True)
    when = (NOW, datetime(2028, 2, 29, 23, 59, 59, 999999, tzinfo=UTC), NOW.astimezone(JST))
    made = []
    for n, time in enumerate(when):
        entries = TransferEntries(
            contract=the_contract,
            outcome=Outcome.ALLOWED,
            transfer_id=f"t-{n}",
            time=time,
            templates=templates,
        )
        made.append(entries.shape(d))
        want = provision_entry(
            decision=d,
            contract=the_contract,
            outcome=Outcome.ALLOWED,
            transfer_id=f"t-{n}",
            entry_id="e",
            time=time,
            subject_key="k",
        )
        assert entries.record(d, subject_key="k", entry_id="e") == to_record(want)
    assert made[0] is made[1] is made[2]
    assert len(templates) == 1
    leap = TransferEntries(
        contract=the_contract, outcome=Outcome.ALLOWED, transfer_id="t", time=when[1]
    )
    assert b'"retain_until":"2031-03-01"' in leap.record(d, subject_key="k").leaf
    for outcome in (Outcome.DENIED, Outcome.FAILED):  # two more kinds: the third clears
        TransferEntries(
            contract=the_contract, outcome=outcome, transfer_id="t", time=NOW, templates=templates
        ).shape(d)
    assert len(templates) == 1
