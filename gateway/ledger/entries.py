"""Transfer-log entries (APPI Art. 29 records, Art. 30 receipts): pure builders.

One entry per subject per transfer; a batch is the entries sharing a `transfer_id`. An entry
holds field names and transforms, never values; a SHA-256 of what was sent for that subject
lets anyone holding the payload prove which one it was.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from gateway.contracts import PartnerContract
from gateway.ledger.canonical import canonicalize
from gateway.ledger.store import LeafRecord
from gateway.ledger.tree import leaf_hash
from gateway.models import ART27_1_EXCEPTIONS, NOT_THIRD_PARTY
from gateway.policy import Decision

SCHEMA = "gateway.transfer-log/v1"


class Outcome(StrEnum):
    ALLOWED = "allowed"  # decided and queued for delivery
    DENIED = "denied"  # refused by the policy engine: recorded too
    DELIVERED = "delivered"  # the partner acknowledged it
    FAILED = "failed"  # delivery gave up (dead letter)
    RECEIVED = "received"  # data came back about the person (Art. 30 receipt)


class RecordingMethod(StrEnum):
    """PPC Rules Art. 19-20: how the Art. 29 record is kept, which sets its retention."""

    SINGLE = "single"  # one record per provision: 3 years from creation
    COMBINED = "combined"  # repeated provision to one recipient: 3 years after the last
    CONTRACT = "contract"  # the contract stands in for the record: 1 year after the last


def utc_text(at: datetime) -> str:
    """RFC 3339, UTC, microseconds: one spelling per instant, so leaves are reproducible.
    (isoformat: twice as fast as strftime, and its year always has four digits.)"""
    return at.astimezone(UTC).isoformat(timespec="microseconds")[:-6] + "Z"


def years_after(day: date, years: int) -> date:
    """The same day `years` later; 29 February becomes 1 March (never shorter)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return date(day.year + years, 3, 1)


def retain_until(
    created: datetime, method: RecordingMethod, last_provision: datetime | None = None
) -> date:
    """APPI Art. 29(2) with PPC Rules Art. 21: how long the record must be kept."""
    if method is RecordingMethod.SINGLE:
        return years_after(created.astimezone(UTC).date(), 3)
    last = (last_provision or created).astimezone(UTC).date()
    return years_after(last, 3 if method is RecordingMethod.COMBINED else 1)


def _value(member: StrEnum | None) -> str | None:
    return None if member is None else member.value


def _partner(contract: PartnerContract) -> dict[str, str]:
    entity = contract.legal_entity
    return {
        "id": contract.id,
        "name": entity.name,
        "address": entity.address,
        "representative": entity.representative,
        "country": contract.country,
    }


def provision_entry(
    *,
    decision: Decision,
    contract: PartnerContract,
    outcome: Outcome,
    transfer_id: str,
    entry_id: str,
    time: datetime,
    subject_key: str,
    payload_sha256: str | None = None,
    reasons: Sequence[Mapping[str, str]] | None = None,
    method: RecordingMethod = RecordingMethod.SINGLE,
) -> dict[str, Any]:
    """The Art. 29 record of one provision decision or outcome about one person."""
    transforms = contract.purposes[decision.purpose].fields if decision.allowed else {}
    return {
        "schema": SCHEMA,
        "entry_id": entry_id,
        "transfer_id": transfer_id,
        "time": utc_text(time),
        "outcome": outcome.value,
        "partner": _partner(contract),
        "purpose": decision.purpose,
        "legal_basis": decision.legal_basis.value,
        # Plain strings, not enums: canonicalize's fast path takes exact JSON types only.
        "cross_border_basis": _value(decision.cross_border_basis),
        "data_category": _value(decision.data_category),
        # Art. 29 applies to exempt provisions too: flagged, never skipped (requirements rule 7).
        "exempt": decision.legal_basis in ART27_1_EXCEPTIONS | NOT_THIRD_PARTY,
        "evidence": dict(decision.evidence),
        "subject": {"id": decision.subject_id, "key": subject_key},
        "items": [{"field": f, "transform": transforms[f].value} for f in decision.fields_sent],
        "fields_dropped": list(decision.fields_dropped),
        "payload_sha256": payload_sha256,
        "rule_ids": list(decision.rule_ids),
        "reasons": list(reasons)
        if reasons is not None
        else [{"code": r.code, "message": r.message, "rule": r.rule} for r in decision.reasons],
        "recording": {
            "method": method.value,
            "retain_until": retain_until(time, method).isoformat(),
        },
    }


def outcome_entry(
    *,
    contract: PartnerContract,
    purpose: str,
    legal_basis: str | None,
    outcome: Outcome,
    operation: str,
    transfer_id: str,
    delivery_id: str,
    entry_id: str,
    time: datetime,
    subject_id: str,
    subject_key: str,
    payload_sha256: str | None,
    refers_to: int,
    reasons: Sequence[Mapping[str, str]] = (),
) -> dict[str, Any]:
    """What became of a provision already recorded at index `refers_to` (its decision,
    basis and items are there): delivered, failed, or a follow-up operation such as the
    removal of the person from the partner's list after a withdrawal (APPI Art. 35)."""
    return {
        "schema": SCHEMA,
        "entry_id": entry_id,
        "transfer_id": transfer_id,
        "time": utc_text(time),
        "outcome": outcome.value,
        "operation": operation,
        "delivery_id": delivery_id,
        "refers_to": refers_to,
        "partner": _partner(contract),
        "purpose": purpose,
        "legal_basis": legal_basis,
        "subject": {"id": subject_id, "key": subject_key},
        "payload_sha256": payload_sha256,
        "reasons": [dict(r) for r in reasons],
        "recording": {
            "method": RecordingMethod.SINGLE.value,
            "retain_until": retain_until(time, RecordingMethod.SINGLE).isoformat(),
        },
    }


def receipt_entry(
    *,
    contract: PartnerContract,
    purpose: str,
    transfer_id: str,
    entry_id: str,
    time: datetime,
    subject_id: str,
    subject_key: str,
    items: Sequence[str],
    obtained_by: str,
    payload_sha256: str | None,
) -> dict[str, Any]:
    """The Art. 30 record of data received about one person (e.g. a fraud verdict)."""
    return {
        "schema": SCHEMA,
        "entry_id": entry_id,
        "transfer_id": transfer_id,
        "time": utc_text(time),
        "outcome": Outcome.RECEIVED.value,
        "partner": _partner(contract),
        "purpose": purpose,
        "legal_basis": None,
        "subject": {"id": subject_id, "key": subject_key},
        "items": [{"field": f} for f in items],
        "received": {"obtained_by": obtained_by},
        "payload_sha256": payload_sha256,
        "recording": {
            "method": RecordingMethod.SINGLE.value,
            "retain_until": retain_until(time, RecordingMethod.SINGLE).isoformat(),
        },
    }


def to_record(entry: Mapping[str, Any]) -> LeafRecord:
    """Canonicalize (RFC 8785) and hash (RFC 9162 §2.1.1) an entry for appending."""
    leaf = canonicalize(dict(entry))
    return LeafRecord(
        leaf=leaf,
        leaf_hash=leaf_hash(leaf),
        entry_id=entry["entry_id"],
        transfer_id=entry["transfer_id"],
        time=datetime.fromisoformat(entry["time"]),
        subject_id=entry["subject"]["id"],
        partner_id=entry["partner"]["id"],
        purpose=entry["purpose"],
        legal_basis=entry["legal_basis"] or "",
        outcome=entry["outcome"],
        retain_until=date.fromisoformat(entry["recording"]["retain_until"]),
    )
