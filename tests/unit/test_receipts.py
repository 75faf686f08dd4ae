"""ReceiptEntries gives exactly to_record(receipt_entry(...)), for any values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.contracts import load_contract
from gateway.ledger.canonical import CanonicalizationError
from gateway.ledger.entries import receipt_entry, to_record
from gateway.ledger.receipts import ReceiptEntries

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
CONTRACT = load_contract(REPO / "partners" / "sample-fraud-provider.toml", NOW.date())
ITEMS = ("decision", "score", "reasons", "provider_ref")

texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
times = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=9)), timezone(-timedelta(hours=5))]),
)  # fmt: skip


def expected(time: datetime, subject: str, key: str, payload: str | None, **ids: str) -> object:
    return to_record(
        receipt_entry(
            contract=CONTRACT, purpose="fraud_detection", time=time, subject_id=subject,
            subject_key=key, items=ITEMS, obtained_by="fraud_check", payload_sha256=payload,
            **ids,
        )
    )  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(times, texts, texts, st.none() | texts, texts, texts)
def test_a_receipt_is_the_canonical_entry_byte_for_byte(
    time: datetime, subject: str, key: str, payload: str | None, entry_id: str, transfer_id: str
) -> None:
    receipts = ReceiptEntries(
        contract=CONTRACT, purpose="fraud_detection", items=ITEMS, obtained_by="fraud_check"
    )
    got = receipts.record(
        entry_id=entry_id, transfer_id=transfer_id, time=time, subject_id=subject,
        subject_key=key, payload_sha256=payload,
    )  # fmt: skip
    assert got == expected(time, subject, key, payload, entry_id=entry_id, transfer_id=transfer_id)


def test_a_lone_surrogate_and_a_naive_time_are_refused() -> None:
    receipts = ReceiptEntries(
        contract=CONTRACT, purpose="fraud_detection", items=ITEMS, obtained_by="fraud_check"
    )
    values = {"entry_id": "e", "transfer_id": "t", "subject_key": "k", "payload_sha256": None}
    with pytest.raises(CanonicalizationError):
        receipts.record(time=NOW, subject_id="\udc80", **values)
    with pytest.raises(ValueError, match="naive"):
        receipts.record(time=NOW.replace(tzinfo=None), subject_id="s", **values)
