"""Receipt entries (APPI Art. 30) from one RFC 8785 template: what a fraud check records of
the provider's verdict, byte for byte `to_record(receipt_entry(...))`.

A fraud check records one receipt, and every receipt of one partner differs only in its
entry and transfer ids, time, subject and payload hash; `ReceiptEntries` canonicalizes the
shape once per partner (with a marker at each of those places, gateway/ledger/
leaf_templates.py) and fills it per check: a join and a hash instead of a walk of the entry.
tests/unit/test_receipts.py holds it to `to_record(receipt_entry(...))`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from gateway.contracts import PartnerContract
from gateway.ledger.entries import (
    Outcome,
    RecordingMethod,
    receipt_entry,
    retain_until,
    utc_text,
)
from gateway.ledger.leaf_templates import Markers, fill_template
from gateway.ledger.store import LeafRecord

__all__ = ["ReceiptEntries"]

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # any time: its places get markers


class ReceiptEntries:
    """The receipts of one partner, purpose, items and way of obtaining them."""

    def __init__(
        self, *, contract: PartnerContract, purpose: str, items: Sequence[str], obtained_by: str
    ) -> None:
        markers = Markers()
        # Markers in the order `record` lists the values.
        entry_id, transfer_id, time, subject_id, subject_key, payload, retain = (
            markers.new() for _ in range(7)
        )
        entry = receipt_entry(
            contract=contract,
            purpose=purpose,
            transfer_id=transfer_id,
            entry_id=entry_id,
            time=_EPOCH,
            subject_id=subject_id,
            subject_key=subject_key,
            items=items,
            obtained_by=obtained_by,
            payload_sha256=payload,
        )
        entry["time"] = time
        entry["recording"]["retain_until"] = retain
        self._pieces, self._order = markers.compile(entry)
        self._pieces_null, _ = markers.compile(entry, raw={payload})  # "null", unquoted
        self._partner_id = contract.id
        self._purpose = purpose

    def record(
        self,
        *,
        entry_id: str,
        transfer_id: str,
        time: datetime,
        subject_id: str,
        subject_key: str,
        payload_sha256: str | None,
    ) -> LeafRecord:
        """Raises CanonicalizationError for a lone surrogate; ValueError for a naive time."""
        if time.utcoffset() is None:
            raise ValueError("naive datetime: a receipt's time is an instant")
        keep = retain_until(time, RecordingMethod.SINGLE)
        if payload_sha256 is None:
            pieces, payload = self._pieces_null, "null"
        else:
            pieces, payload = self._pieces, payload_sha256
        values = (
            *(entry_id, transfer_id, utc_text(time), subject_id, subject_key, payload),
            keep.isoformat(),
        )
        leaf, leaf_hash = fill_template(pieces, self._order, values)
        return LeafRecord(
            leaf,
            leaf_hash,
            entry_id,
            transfer_id,
            time.astimezone(UTC),
            subject_id,
            self._partner_id,
            self._purpose,
            "",  # a receipt has no legal basis: nothing was provided
            Outcome.RECEIVED.value,
            keep,
        )
