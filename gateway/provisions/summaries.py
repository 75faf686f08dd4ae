"""What an attribute-estimation recipient sends back, checked and recorded (pure).

The requirements allow a statistical summary only: `check_summary` (gateway.adapters.
attribute_export) refuses any cell under the contract's `[statistics] min_cell_count` and any
per-person key; the identifiers it must never see as a dimension are the contract's hashed or
keyed fields and the subject id (`gateway.contract_kinds.identifier_fields`).

Both outcomes are logged, as Art. 30-style receipt entries built on `receipt_entry`:

- accepted: outcome `received`, the summary's dimensions as items, obtained_by
  "attribute_estimation_summary", the summary id and upload id, the SHA-256 of the bytes
  received; data_category "statistics".
- refused: outcome `denied`, no items, the problems as reasons (JSON pointers and fixed
  details, never a value, never a key the summary does not declare), the SHA-256 of the bytes
  received (proof of what came, without keeping it), or null for a body refused unread (too
  large, or not JSON by its media type).

A summary is about a group, not a person, so its entry names no one: subject id and key are
"" (`NO_SUBJECT`). No subject id can be empty (gateway.consent.SUBJECT_ID_PATTERN needs a
character), so these entries never appear in a person's disclosure (Art. 33(5)) and a
partner or outcome filter finds them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from gateway.adapters.attribute_export import Problem, Summary
from gateway.contracts import PartnerContract
from gateway.ledger.entries import Outcome, receipt_entry, to_record
from gateway.ledger.store import LeafRecord
from gateway.models import DataCategory
from gateway.provisions.attribute_export import DEFAULT_PURPOSE

__all__ = [
    "NO_SUBJECT",
    "OBTAINED_BY",
    "receipt_record",
    "refusal_record",
    "summary_purpose",
]

OBTAINED_BY: Final = "attribute_estimation_summary"
NO_SUBJECT: Final = ""
MAX_REASONS: Final = 50  # a refusal lists this many problems in the log, then counts the rest


def summary_purpose(contract: PartnerContract) -> str:
    """The purpose a summary is received under: attribute_estimation when the contract lists
    it, else its first purpose by name (the body names none: a summary holds nothing else)."""
    if DEFAULT_PURPOSE in contract.purposes:
        return DEFAULT_PURPOSE
    return min(contract.purposes)


def receipt_record(
    *,
    contract: PartnerContract,
    summary: Summary,
    summary_id: str,
    entry_id: str,
    body_sha256: str,
    time: datetime,
) -> LeafRecord:
    """The log entry of an accepted summary (its own transfer: `summary_id`). Raises
    CanonicalizationError for a string with no RFC 8785 form (check_summary lets none by)."""
    entry = receipt_entry(
        contract=contract,
        purpose=summary_purpose(contract),
        transfer_id=summary_id,
        entry_id=entry_id,
        time=time,
        subject_id=NO_SUBJECT,
        subject_key=NO_SUBJECT,
        items=summary.dimensions,
        obtained_by=OBTAINED_BY,
        payload_sha256=body_sha256,
    )
    entry["data_category"] = DataCategory.STATISTICS.value
    entry["received"] = {
        "obtained_by": OBTAINED_BY,
        "summary_id": summary_id,
        "upload_id": summary.upload_id,
        "cells": len(summary.cells),
        "min_cell_count": _minimum(contract),
    }
    return to_record(entry)


def refusal_record(
    *,
    contract: PartnerContract,
    problems: Sequence[Problem],
    transfer_id: str,
    entry_id: str,
    body_sha256: str | None,
    time: datetime,
) -> LeafRecord:
    """The log entry of a refused summary: what was wrong, never what it held.
    `body_sha256` is None for a body refused unread (413, 415)."""
    entry = receipt_entry(
        contract=contract,
        purpose=summary_purpose(contract),
        transfer_id=transfer_id,
        entry_id=entry_id,
        time=time,
        subject_id=NO_SUBJECT,
        subject_key=NO_SUBJECT,
        items=(),
        obtained_by=OBTAINED_BY,
        payload_sha256=body_sha256,
    )
    entry["outcome"] = Outcome.DENIED.value
    entry["data_category"] = DataCategory.STATISTICS.value
    entry["received"] = {
        "obtained_by": OBTAINED_BY,
        "refused": True,
        "min_cell_count": _minimum(contract),
    }
    entry["reasons"] = refusal_reasons(problems)
    return to_record(entry)


def refusal_reasons(problems: Sequence[Problem]) -> list[dict[str, str]]:
    """The problems as log reasons: at most MAX_REASONS, then one counting the rest.
    check_summary's details never quote a value; its pointers name only keys the schema, the
    gateway or the summary's valid dimensions declare (any other key is counted)."""
    reasons = [
        {"code": "summary_refused", "message": f"{where or '/'}: {detail}"}
        for where, detail in problems[:MAX_REASONS]
    ]
    if len(problems) > MAX_REASONS:
        more = len(problems) - MAX_REASONS
        reasons.append({"code": "summary_refused", "message": f"and {more} more problem(s)"})
    return reasons


def _minimum(contract: PartnerContract) -> int:
    assert contract.statistics is not None, "required for kind attribute_export"
    return contract.statistics.min_cell_count
