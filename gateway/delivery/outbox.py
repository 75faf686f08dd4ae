"""The outbox: what must still be sent to a partner, written in the same transaction as the
log entries of the decision that allowed it (architecture: ledger.append() + outbox).

A row carries the exact request bytes and the idempotency key (its `delivery_id`), so a
retry, a restart or a replay sends the same bytes under the same key and the partner can
deduplicate. Rows move `pending` -> `delivered`, or `pending` -> `dead` after the retry limit
(`gateway outbox replay` moves a dead row back to pending).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Final, TypeAlias

from gateway.cooperative import Steps, run_through


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


@dataclass(frozen=True, slots=True)
class OutboxDone:
    """A delivery ended: acknowledged by the partner, or a dead letter after its retries."""

    delivery_id: str
    state: DeliveryState
    attempts: int
    error: str | None
    at: datetime

    def shifted(self, by: int) -> OutboxDone:
        return self


@dataclass(frozen=True, slots=True)
class JobProgress:
    """How far a job's input has been read (the resume point) and what came of it."""

    job_id: str
    records_done: int  # the resume point: the line of the last record consumed (not a count)
    counts: Mapping[str, int]  # added to the job's outcome counts
    input_complete: bool
    at: datetime

    def shifted(self, by: int) -> JobProgress:
        return self


@dataclass(frozen=True, slots=True)
class Rejection:
    """One record refused or invalid: where, whose, why. Never the value."""

    line: int  # 1-based position of the record in the job's input
    subject_id: str | None
    code: str
    field: str | None
    message: str


@dataclass(frozen=True, slots=True)
class JobRejections:
    job_id: str
    rows: tuple[Rejection, ...]

    def shifted(self, by: int) -> JobRejections:
        return self


# What may be written in the same transaction as log entries (LedgerStore.ledger_append).
SideWrite: TypeAlias = OutboxRow | OutboxDone | JobProgress | JobRejections


@dataclass(frozen=True, slots=True)
class PendingDelivery:
    """An outbox row as the worker sees it."""

    seq: int
    delivery_id: str
    job_id: str | None
    partner_id: str
    operation: str
    transfer_id: str
    first_index: int
    entry_count: int
    content_type: str
    payload: bytes
    meta: bytes
    state: DeliveryState
    attempts: int
    last_error: str | None


@dataclass(frozen=True, slots=True)
class NewJob:
    job_id: str
    client_id: str
    idempotency_key: str
    request_sha256: str  # of the job's parameters: the same key with others is a conflict
    kind: str
    partner_id: str
    destination: str | None
    purpose: str
    legal_basis: str
    transfer_id: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as stored, with its deliveries summed by state."""

    job: NewJob
    records_done: int
    input_complete: bool
    counts: Mapping[str, int]
    deliveries: Mapping[str, tuple[int, int]]  # state -> (requests, entries)
    updated_at: datetime


_SUBJECTS_A_STEP: Final = 500  # of DeliveryMeta's, encoded or decoded between two pauses


def _dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class DeliveryMeta:
    """What the worker needs to log the outcome of a row, per subject in entry order."""

    purpose: str
    legal_basis: str | None
    subjects: tuple[tuple[str, str, str | None], ...]  # (subject id, subject key, payload sha)

    def encode(self) -> bytes:
        return run_through(self.encoded())

    def encoded(self) -> Steps[bytes]:
        """`encode`, pausing every few hundred subjects (10,000 take about 20 ms)."""
        head = {"purpose": self.purpose, "legal_basis": self.legal_basis}
        packer = zlib.compressobj(1)
        parts = [packer.compress(_dumps(head)[:-1].encode() + b',"subjects":[')]
        for start in range(0, len(self.subjects), _SUBJECTS_A_STEP):
            # json writes a tuple as the array a list would be: no list per subject.
            piece = _dumps(self.subjects[start : start + _SUBJECTS_A_STEP])[1:-1]
            parts.append(packer.compress((("," if start else "") + piece).encode()))
            yield
        parts += (packer.compress(b"]}"), packer.flush())
        return b"".join(parts)

    @classmethod
    def decode(cls, meta: bytes) -> DeliveryMeta:
        """Raises ValueError for bytes `encode` did not write."""
        return run_through(cls.decoded(meta))

    @classmethod
    def decoded(cls, meta: bytes) -> Steps[DeliveryMeta]:
        """`decode`, pausing every few hundred subjects."""
        try:
            body = json.loads(zlib.decompress(meta))
            found = body["subjects"]
            subjects: list[tuple[str, str, str | None]] = []
            for start in range(0, len(found), _SUBJECTS_A_STEP):
                subjects += [
                    (str(s), str(k), None if h is None else str(h))
                    for s, k, h in found[start : start + _SUBJECTS_A_STEP]
                ]
                yield
            return cls(str(body["purpose"]), body["legal_basis"], tuple(subjects))
        except (zlib.error, ValueError, KeyError, TypeError) as exc:
            raise ValueError("not delivery meta") from exc
