"""The outbox and jobs on SQLite: statements run on the store's worker thread (see sqlite.py).

`insert_outbox` runs inside the log's append transaction (the side writes of one
`ledger_append`); the other functions open their own transaction where they write.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Final

from gateway.delivery.outbox import (
    DeliveryState,
    JobProgress,
    JobRecord,
    NewJob,
    OutboxDone,
    OutboxRow,
    PendingDelivery,
    Rejection,
    SideWrite,
)
from gateway.storage.rejections_schema_v7 import RejectionKey, keyed_rows
from gateway.storage.sqlite_connect import transaction
from gateway.storage.sqlite_time import from_micros, to_micros

_INSERT: Final = """INSERT INTO outbox (delivery_id, job_id, partner_id, operation, transfer_id,
    first_index, entry_count, content_type, payload, meta, next_attempt_at, created_at,
    updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
# A delivered ingest owes its check for withdrawals until the worker has run it (migration 8).
_DONE: Final = """UPDATE outbox SET state = ?1, attempts = ?2, last_error = ?3, updated_at = ?4,
    removal_check = CASE WHEN ?1 = 'delivered' AND operation = 'ingest' THEN 1
        ELSE removal_check END
    WHERE delivery_id = ?5"""
_PROGRESS: Final = """UPDATE jobs SET records_done = ?, input_complete = ?, counts = ?,
    updated_at = ? WHERE job_id = ?"""
_COUNTS: Final = "SELECT counts FROM jobs WHERE job_id = ?"
# Ignore on conflict: only the same rows written again can conflict (rejections_schema_v7.py).
_REJECT: Final = """INSERT OR IGNORE INTO job_rejections (job_id, line, ordinal, subject_id, code,
    field, message) VALUES (?, ?, ?, ?, ?, ?, ?)"""
_NEW_JOB: Final = """INSERT INTO jobs (job_id, client_id, idempotency_key, request_sha256, kind,
    partner_id, destination, purpose, legal_basis, transfer_id, created_at, updated_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (client_id, idempotency_key) DO NOTHING"""
_JOB: Final = """SELECT job_id, client_id, idempotency_key, request_sha256, kind,
    partner_id,
    destination, purpose, legal_basis, transfer_id, created_at, records_done, input_complete,
    counts, updated_at FROM jobs WHERE job_id = ?"""
_JOB_BY_KEY: Final = """SELECT job_id, client_id, idempotency_key, request_sha256, kind,
    partner_id,
    destination, purpose, legal_basis, transfer_id, created_at, records_done, input_complete,
    counts, updated_at FROM jobs WHERE client_id = ? AND idempotency_key = ?"""
_JOB_BY_TRANSFER: Final = """SELECT job_id, client_id, idempotency_key, request_sha256,
    kind, partner_id,
    destination, purpose, legal_basis, transfer_id, created_at, records_done, input_complete,
    counts, updated_at FROM jobs WHERE transfer_id = ?"""
_JOB_DELIVERIES: Final = """SELECT state, count(*), coalesce(sum(entry_count), 0) FROM outbox
    WHERE job_id = ? GROUP BY state"""
# Pages follow the primary key: (line, ordinal) after the last row of the page before.
_REJECTIONS: Final = """SELECT line, ordinal, subject_id, code, field, message FROM job_rejections
    WHERE job_id = ? AND (line, ordinal) > (?, ?) ORDER BY line, ordinal LIMIT ?"""
# Due rows are picked by id first (the index alone), then read whole one by one: a poll that
# finds the rows under way again must not read their megabytes of payload again.
_DUE_IDS: Final = """SELECT delivery_id FROM outbox
    WHERE state = 'pending' AND next_attempt_at <= ? AND seq > ? ORDER BY seq LIMIT ?"""
_ONE: Final = """SELECT seq, delivery_id, job_id, partner_id, operation, transfer_id,
    first_index, entry_count, content_type, payload, meta, state, attempts, last_error
    FROM outbox WHERE delivery_id = ?"""
_BY_STATE: Final = """SELECT seq, delivery_id, job_id, partner_id, operation, transfer_id,
    first_index, entry_count, content_type, payload, meta, state, attempts, last_error
    FROM outbox WHERE state = ? AND seq > ?
    ORDER BY seq LIMIT ?"""
_OF_TRANSFER: Final = """SELECT seq, delivery_id, job_id, partner_id, operation, transfer_id,
    first_index, entry_count, content_type, payload, meta, state, attempts, last_error
    FROM outbox WHERE transfer_id = ?
    ORDER BY seq"""
_CHECKS_OWED: Final = """SELECT seq, delivery_id, job_id, partner_id, operation, transfer_id,
    first_index, entry_count, content_type, payload, meta, state, attempts, last_error
    FROM outbox WHERE removal_check = 1 AND seq > ? ORDER BY seq LIMIT ?"""
_CHECKED: Final = "UPDATE outbox SET removal_check = 0 WHERE delivery_id = ?"
_ATTEMPTED: Final = """UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?,
    updated_at = ? WHERE delivery_id = ? AND state = 'pending'"""
_REPLAY: Final = """UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?,
    updated_at = ? WHERE state = 'dead' AND delivery_id = ?"""


def insert_outbox(conn: sqlite3.Connection, rows: Sequence[SideWrite], first_index: int) -> None:
    """Apply the side writes of one append inside the caller's transaction; `first_index`
    is the log index of the append's first record. Raises sqlite3.Error; ValueError for a
    naive time."""
    outbox = []
    for w in rows:
        if isinstance(w, OutboxRow):
            at = to_micros(w.created_at)
            outbox.append(
                (
                    *(w.delivery_id, w.job_id, w.partner_id, w.operation, w.transfer_id),
                    first_index + w.entries_offset,
                    *(w.entry_count, w.content_type, w.payload, w.meta, at, at, at),
                )
            )
        elif isinstance(w, OutboxDone):
            at = to_micros(w.at)
            conn.execute(_DONE, (w.state.value, w.attempts, w.error, at, w.delivery_id))
        elif isinstance(w, JobProgress):
            _progress(conn, w)
        else:
            conn.executemany(_REJECT, keyed_rows(w.job_id, w.rows))
    if outbox:
        conn.executemany(_INSERT, outbox)


def apply_side_writes(conn: sqlite3.Connection, writes: Sequence[SideWrite]) -> None:
    """The same writes in a transaction of their own (no log entries with them)."""
    with transaction(conn):
        insert_outbox(conn, writes, 0)


def _progress(conn: sqlite3.Connection, p: JobProgress) -> None:
    row = conn.execute(_COUNTS, (p.job_id,)).fetchone()
    counts: dict[str, int] = json.loads(row[0]) if row else {}
    for name, added in p.counts.items():
        counts[name] = counts.get(name, 0) + added
    params = (p.records_done, int(p.input_complete), json.dumps(counts, sort_keys=True))
    conn.execute(_PROGRESS, (*params, to_micros(p.at), p.job_id))


def create_job(conn: sqlite3.Connection, job: NewJob) -> tuple[JobRecord, bool]:
    """Insert the job unless its (client, idempotency key) exists; returns the stored job and
    whether it is new."""
    at = to_micros(job.created_at)
    with transaction(conn):
        params = (job.job_id, job.client_id, job.idempotency_key, job.request_sha256, job.kind)
        more = (job.partner_id, job.destination, job.purpose, job.legal_basis, job.transfer_id)
        created = conn.execute(_NEW_JOB, (*params, *more, at, at)).rowcount == 1
        row = conn.execute(_JOB_BY_KEY, (job.client_id, job.idempotency_key)).fetchone()
        return _job(conn, row), created


def get_job(conn: sqlite3.Connection, job_id: str) -> JobRecord | None:
    row = conn.execute(_JOB, (job_id,)).fetchone()
    return None if row is None else _job(conn, row)


def job_of_transfer(conn: sqlite3.Connection, transfer_id: str) -> JobRecord | None:
    row = conn.execute(_JOB_BY_TRANSFER, (transfer_id,)).fetchone()
    return None if row is None else _job(conn, row)


def _job(conn: sqlite3.Connection, row: Sequence[Any]) -> JobRecord:
    deliveries = {
        state: (int(n), int(entries))
        for state, n, entries in conn.execute(_JOB_DELIVERIES, (row[0],))
    }
    job = _new_job(row, from_micros(row[10]))
    return JobRecord(
        job=job,
        records_done=row[11],
        input_complete=bool(row[12]),
        counts=json.loads(row[13]),
        deliveries=deliveries,
        updated_at=from_micros(row[14]),
    )


def job_rejections(
    conn: sqlite3.Connection, job_id: str, *, after: RejectionKey, limit: int
) -> list[tuple[RejectionKey, Rejection]]:
    """At most `limit` of the job's rejections after the key `after`, in key order."""
    rows = conn.execute(_REJECTIONS, (job_id, *after, limit))
    return [((line, ordinal), Rejection(line, *rest)) for line, ordinal, *rest in rows]


def _delivery(row: Sequence[Any]) -> PendingDelivery:
    return PendingDelivery(
        seq=row[0],
        delivery_id=row[1],
        job_id=row[2],
        partner_id=row[3],
        operation=row[4],
        transfer_id=row[5],
        first_index=row[6],
        entry_count=row[7],
        content_type=row[8],
        payload=bytes(row[9]),
        meta=bytes(row[10]),
        state=DeliveryState(row[11]),
        attempts=row[12],
        last_error=row[13],
    )


def due_deliveries(
    conn: sqlite3.Connection,
    now: datetime,
    *,
    after_seq: int,
    limit: int,
    skip: Collection[str] = (),
) -> list[PendingDelivery]:
    """Pending rows whose next attempt is due, in the order they were written, but for the
    ids in `skip` (those already under way)."""
    params = (to_micros(now), after_seq, limit + len(skip))
    ids = [row[0] for row in conn.execute(_DUE_IDS, params) if row[0] not in skip][:limit]
    rows = (conn.execute(_ONE, (delivery_id,)).fetchone() for delivery_id in ids)
    return [_delivery(row) for row in rows if row is not None]


def deliveries_in_state(
    conn: sqlite3.Connection, state: DeliveryState, *, after_seq: int, limit: int
) -> list[PendingDelivery]:
    return [_delivery(r) for r in conn.execute(_BY_STATE, (state.value, after_seq, limit))]


def delivery(conn: sqlite3.Connection, delivery_id: str) -> PendingDelivery | None:
    row = conn.execute(_ONE, (delivery_id,)).fetchone()
    return None if row is None else _delivery(row)


def deliveries_of_transfer(conn: sqlite3.Connection, transfer_id: str) -> list[PendingDelivery]:
    return [_delivery(row) for row in conn.execute(_OF_TRANSFER, (transfer_id,))]


def removal_checks_owed(
    conn: sqlite3.Connection, *, after_seq: int, limit: int
) -> list[PendingDelivery]:
    return [_delivery(r) for r in conn.execute(_CHECKS_OWED, (after_seq, limit))]


def removal_checked(conn: sqlite3.Connection, delivery_id: str) -> None:
    with transaction(conn):
        conn.execute(_CHECKED, (delivery_id,))


def record_attempt(
    conn: sqlite3.Connection,
    delivery_id: str,
    *,
    attempts: int,
    next_attempt_at: datetime,
    error: str,
    now: datetime,
) -> None:
    """A failed attempt that will be retried: count it, say when to try next."""
    with transaction(conn):
        params = (attempts, to_micros(next_attempt_at), error, to_micros(now), delivery_id)
        conn.execute(_ATTEMPTED, params)


def replay_dead(conn: sqlite3.Connection, delivery_ids: Sequence[str], now: datetime) -> int:
    """Dead letters back to pending, due now, attempts reset; returns how many moved."""
    at = to_micros(now)
    with transaction(conn):
        return sum(conn.execute(_REPLAY, (at, at, d)).rowcount for d in delivery_ids)


def _new_job(row: Any, created_at: datetime) -> NewJob:
    return NewJob(
        job_id=row[0],
        client_id=row[1],
        idempotency_key=row[2],
        request_sha256=row[3],
        kind=row[4],
        partner_id=row[5],
        destination=row[6],
        purpose=row[7],
        legal_basis=row[8],
        transfer_id=row[9],
        created_at=created_at,
    )
