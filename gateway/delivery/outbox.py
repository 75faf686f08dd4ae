"""The outbox: what must still be sent to a partner, written in the same transaction as the
log entries of the decision that allowed it (architecture: ledger.append() + outbox).

A row carries the exact request bytes and the idempotency key (its `delivery_id`), so a
retry, a restart or a replay sends the same bytes under the same key and the partner can
deduplicate. Rows move `pending` -> `delivered`, or `pending` -> `dead` after the retry limit
(`gateway outbox replay` moves a dead row back to pending).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One request to send, as appended with the entries that allowed it.

    `entries_offset` and `entry_count` locate those entries within the records of the same
    `Ledger.append` call; the store turns the offset into the log index (`first_index`).
    """

    delivery_id: str  # also the Idempotency-Key the partner sees
    job_id: str | None
    partner_id: str
    operation: str  # adapter operation: "ingest", "remove", "upload", ...
    transfer_id: str
    entries_offset: int
    entry_count: int
    content_type: str
    payload: bytes  # the exact request body
    meta: bytes  # what the worker needs to log the outcome (adapter-defined, opaque here)
    created_at: datetime

    def shifted(self, by: int) -> OutboxRow:
        """The same row with its entries `by` records later (group commit joins calls)."""
        return OutboxRow(
            delivery_id=self.delivery_id,
            job_id=self.job_id,
            partner_id=self.partner_id,
            operation=self.operation,
            transfer_id=self.transfer_id,
            entries_offset=self.entries_offset + by,
            entry_count=self.entry_count,
            content_type=self.content_type,
            payload=self.payload,
            meta=self.meta,
            created_at=self.created_at,
        )
