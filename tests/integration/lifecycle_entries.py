"""Log entries of one person's provision lifecycle, built as the gateway builds them: a
provision, its delivery, the removal a withdrawal queued (APPI Art. 35) and its delivery, and
a receipt (Art. 30). For the disclosure report and the transfer exports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.contracts import load_contract
from gateway.ledger.entries import Outcome, outcome_entry, provision_entry, receipt_entry
from gateway.models import ConsentAction, ConsentEvent, LegalBasis, SubjectState
from gateway.policy import ProvisionItem, decide
from tests.integration.conftest import REPO

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
GOOGLE = load_contract(REPO / "partners" / "google-customer-match.toml", NOW.date())
FRAUD = load_contract(REPO / "partners" / "sample-fraud-provider.toml", NOW.date())
PURPOSE = "ad_customer_match"


def consented(subject_id: str) -> SubjectState:
    grant = ConsentEvent(
        subject_id=subject_id,
        purpose=PURPOSE,
        action=ConsentAction.GRANT,
        effective_at=NOW - timedelta(days=30),
        notice_version="n1",
        channel="web",
        foreign_disclosure_version="us-google-2025-04",
        recorded_at=NOW,
        recorded_by="test",
    )
    return SubjectState(subject_id=subject_id, consents={PURPOSE: grant})


def at(minutes: int) -> datetime:
    return NOW + timedelta(minutes=minutes)


def provision(subject_id: str, transfer_id: str, when: datetime) -> dict[str, Any]:
    item = ProvisionItem(
        subject_id=subject_id, purpose=PURPOSE, legal_basis=LegalBasis.CONSENT, fields=("email",)
    )
    decision = decide(item, GOOGLE, consented(subject_id), when)
    assert decision.allowed
    return provision_entry(
        decision=decision,
        contract=GOOGLE,
        outcome=Outcome.ALLOWED,
        transfer_id=transfer_id,
        entry_id=f"e-{transfer_id}",
        time=when,
        subject_key="k1:00",
        payload_sha256="ab" * 32,
    )


def outcome(
    subject_id: str,
    *,
    outcome: Outcome,
    operation: str,
    transfer_id: str,
    refers_to: int,
    when: datetime,
) -> dict[str, Any]:
    reasons = [{"code": "consent_withdrawn", "message": "The person withdrew."}]
    return outcome_entry(
        contract=GOOGLE,
        purpose=PURPOSE,
        legal_basis="consent",
        outcome=outcome,
        operation=operation,
        transfer_id=transfer_id,
        delivery_id=f"d-{transfer_id}",
        entry_id=f"e-{transfer_id}-{refers_to}",
        time=when,
        subject_id=subject_id,
        subject_key="k1:00",
        payload_sha256="ab" * 32,
        refers_to=refers_to,
        reasons=reasons if operation == "remove" else (),
    )


def receipt(subject_id: str, when: datetime) -> dict[str, Any]:
    return receipt_entry(
        contract=FRAUD,
        purpose=next(iter(FRAUD.purposes)),
        transfer_id="check-1",
        entry_id="e-check-1",
        time=when,
        subject_id=subject_id,
        subject_key="k1:00",
        items=("score", "decision"),
        obtained_by="fraud-check response",
        payload_sha256=None,
    )


def lifecycle(subject_id: str = "m-1", first: int = 0) -> list[dict[str, Any]]:
    """A provision delivered, then removed after a withdrawal, then a receipt, as the log
    holds them from index `first`: each outcome refers to the entry before it."""
    entries = [
        provision(subject_id, "t-ingest", at(0)),
        outcome(subject_id, outcome=Outcome.DELIVERED, operation="ingest",
                transfer_id="t-ingest", refers_to=first, when=at(1)),
        outcome(subject_id, outcome=Outcome.ALLOWED, operation="remove",
                transfer_id="t-remove", refers_to=first + 1, when=at(60)),
        outcome(subject_id, outcome=Outcome.DELIVERED, operation="remove",
                transfer_id="t-remove", refers_to=first + 2, when=at(61)),
        receipt(subject_id, at(90)),
    ]  # fmt: skip
    return indexed(entries, first)


def indexed(entries: list[dict[str, Any]], first: int = 0) -> list[dict[str, Any]]:
    return [{"index": first + n, **e} for n, e in enumerate(entries)]
