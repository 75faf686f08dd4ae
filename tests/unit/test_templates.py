"""TransferEntries builds, byte for byte, what to_record(provision_entry(...)) builds."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

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
from gateway.ledger.templates import OutcomeEntries, TransferEntries
from gateway.models import ConsentAction, ConsentEvent, LegalBasis, SubjectState
from gateway.policy import Decision, ProvisionItem, decide

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
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


text = st.text(st.characters(codec="utf-8"), max_size=30)  # any Unicode but lone surrogates


@settings(max_examples=150, deadline=None)
@given(
    subject=st.from_regex(r"[A-Za-z0-9._:@-]{1,40}", fullmatch=True),
    fields=st.lists(st.sampled_from(FIELDS), min_size=1, unique=True).map(tuple),
    consented=st.booleans(),
    key=text,
    payload=st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
    evidence_value=text,
    entry_id=text,
    outcome=st.sampled_from(Outcome),
    method=st.sampled_from(RecordingMethod),
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
) -> None:
    d = decision(subject, fields, consented)
    if d.evidence:  # any string may stand in an evidence value: quotes, controls, emoji
        first = next(iter(d.evidence))
        d = d.model_copy(update={"evidence": {**d.evidence, first: evidence_value}})
    common = {"outcome": outcome, "transfer_id": "t-1", "time": NOW, "method": method}
    entries = TransferEntries(contract=contract(), **common)  # type: ignore[arg-type]
    for _ in range(2):  # the second call takes the cached template
        got = entries.record(d, subject_key=key, payload_sha256=payload, entry_id=entry_id)
        want = to_record(
            provision_entry(
                decision=d,
                contract=contract(),
                entry_id=entry_id,
                subject_key=key,
                payload_sha256=payload,
                **common,  # type: ignore[arg-type]
            )
        )
        assert got == want


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
    payload=st.none() | st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
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
