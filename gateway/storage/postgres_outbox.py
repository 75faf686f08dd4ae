"""The outbox and jobs on PostgreSQL (the twin of sqlite_outbox.py).

`insert_outbox` runs on the connection of the log's append transaction; the other functions
take the pool (or a connection) and run their own statements. They raise asyncpg errors;
PostgresStore translates them into StorageError.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, Final, TypeAlias

import asyncpg

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

Conn: TypeAlias = "asyncpg.Connection[Any] | asyncpg.pool.PoolConnectionProxy[Any]"
Pool: TypeAlias = "asyncpg.Pool[Any]"
Held: TypeAlias = "asyncpg.pool.PoolConnectionProxy[Any]"

_INSERT: Final = """INSERT INTO outbox (delivery_id, job_id, partner_id, operation, transfer_id,
    first_index, entry_count, content_type, payload, meta, next_attempt_at, created_at,
    updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $11)"""
# A delivered ingest owes its check for withdrawals until the worker has run it (migration 8).
_DONE: Final = """UPDATE outbox SET state = $1, attempts = $2, last_error = $3, updated_at = $4,
    removal_check = removal_check OR ($1 = 'delivered' AND operation = 'ingest')
    WHERE delivery_id = $5"""
# jsonb addition of counts happens in Python under a row lock: deltas must not be lost when
# two instances progress the same job (they do not today: one request feeds one job).
_COUNTS: Final = "SELECT counts FROM jobs WHERE job_id = $1 FOR UPDATE"
_PROGRESS: Final = """UPDATE jobs SET records_done = $1, input_complete = $2, counts = $3::jsonb,
    updated_at = $4 WHERE job_id = $5"""
# Nothing on conflict: only the same rows written again can conflict (rejections_schema_v7.py).
_REJECT: Final = """INSERT INTO job_rejections (job_id, line, ordinal, subject_id, code, field,
    message) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING"""
_NEW_JOB: Final = """INSERT INTO jobs (job_id, client_id, idempotency_key, request_sha256, kind,
    partner_id, destination, purpose, legal_basis, transfer_id, created_at, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)
    ON CONFLICT (client_id, idempotency_key) DO NOTHING"""
_JOB: Final = """SELECT job_id, client_id, idempotency_key, request_sha256, kind,
    partner_id,
    destination, purpose, legal_basis, transfer_id, created_at, records_done, input_complete,
    counts::text, updated_at FROM jobs WHERE job_id = $1"""
_JOB_BY_KEY: Final = """SELECT job_id, client_id, idempotency_key, request_sha256, kind,
    partner_id,
    destination, purpose, legal_basis, transfer_id, created_at, records_done, input_complete,
    counts::text, updated_at FROM jobs WHERE client_id = $1 AND idempotency_key = $2"""
_JOB_BY_TRANSFER: Final = """SELECT job_id, client_id, idempotency_key, request_sha256,
    kind, partner_id,
    destination, purpose, legal_basis, transfer_id, created_at, records_done, input_complete,
    counts::text, updated_at FROM jobs WHERE transfer_id = $1"""
_JOB_DELIVERIES: Final = """SELECT state, count(*), coalesce(sum(entry_count), 0) FROM outbox
    WHERE job_id = $1 GROUP BY state"""
# Pages follow the primary key: (line, ordinal) after the last row of the page before.
_REJECTIONS: Final = """SELECT line, ordinal, subject_id, code, field, message FROM job_rejections
    WHERE job_id = $1 AND (line, ordinal) > ($2, $3) ORDER BY line, ordinal LIMIT $4"""
# Rows under way are skipped in the query: their megabytes of payload are not read again.
_DUE: Final = """SELECT seq, delivery_id, job_id, partner_id, operation, transfer_id,
    first_index, entry_count, content_type, payload, meta, state, attempts, last_error FROM outbox
    WHERE state = 'pending' AND next_attempt_at <= $1 AND seq > $2
        AND NOT (delivery_id = ANY($4::text[]))
    ORDER BY seq LIMIT $3"""
_BY_STATE: Final = """SELECT seq, delivery_id, job_id, partner_id, operation, transfer_id,
    first_index, entry_count, content_type, payload, meta, state, attempts, last_error
    FROM outbox WHERE state = $1 AND seq > $2
    ORDER BY seq LIMIT $3"""
_OF_TRANSFER: Final = """SELECT seq, delivery_id, job_id, partner_id, operation, transfer_id,
    first_index, entry_count, content_type, payload, meta, state, attempts, last_error
    FROM outbox WHERE transfer_id = $1
    ORDER BY seq"""
_CHECKS_OWED: Final = """SELECT seq, delivery_id, job_id, partner_id, operation, transfer_id,
    first_index, entry_count, content_type, payload, meta, state, attempts, last_error
    FROM outbox WHERE removal_check AND seq > $1 ORDER BY seq LIMIT $2"""
_CHECKED: Final = "UPDATE outbox SET removal_check = false WHERE delivery_id = $1"
_ONE: Final = """SELECT seq, delivery_id, job_id, partner_id, operation, transfer_id,
    first_index, entry_count, content_type, payload, meta, state, attempts, last_error
    FROM outbox WHERE delivery_id = $1"""
_ATTEMPTED: Final = """UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3,
    updated_at = $4 WHERE delivery_id = $5 AND state = 'pending'"""
_REPLAY: Final = """UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = $1,
    updated_at = $1 WHERE state = 'dead' AND delivery_id = ANY($2::text[])"""


def _aware(at: datetime) -> datetime:
    """Raises ValueError for a naive time (asyncpg would silently take it as UTC)."""
    if at.utcoffset() is None:
        raise ValueError("naive datetime: the store keeps timezone-aware instants")
    return at


async def insert_outbox(conn: Conn, rows: Sequence[SideWrite], first_index: int) -> None:
    """Apply the side writes of one append inside the caller's transaction. Raises asyncpg
    errors; ValueError for a naive time."""
    outbox = []
    for w in rows:
        if isinstance(w, OutboxRow):
            outbox.append(
                (
                    *(w.delivery_id, w.job_id, w.partner_id, w.operation, w.transfer_id),
                    first_index + w.entries_offset,
                    *(w.entry_count, w.content_type, w.payload, w.meta),
                    _aware(w.created_at),
                )
            )
        elif isinstance(w, OutboxDone):
            params = (w.state.value, w.attempts, w.error, _aware(w.at), w.delivery_id)
            await conn.execute(_DONE, *params)
        elif isinstance(w, JobProgress):
            await _progress(conn, w)
        else:
            await conn.executemany(_REJECT, list(keyed_rows(w.job_id, w.rows)))
    if outbox:
        await conn.executemany(_INSERT, outbox)


async def apply_side_writes(pool: Pool, writes: Sequence[SideWrite]) -> None:
    """The same writes in a transaction of their own (no log entries with them)."""
    async with pool.acquire() as conn, conn.transaction():
        await insert_outbox(conn, writes, 0)


async def _progress(conn: Conn, p: JobProgress) -> None:
    stored = await conn.fetchval(_COUNTS, p.job_id)
    counts: dict[str, int] = json.loads(stored) if stored else {}
    for name, added in p.counts.items():
        counts[name] = counts.get(name, 0) + added
    text = json.dumps(counts, sort_keys=True)
    await conn.execute(_PROGRESS, p.records_done, p.input_complete, text, _aware(p.at), p.job_id)


async def create_job(pool: Pool, job: NewJob) -> tuple[JobRecord, bool]:
    """Insert the job unless its (client, idempotency key) exists; returns the stored job and
    whether it is new."""
    async with pool.acquire() as conn, conn.transaction():
        status = await conn.execute(
            _NEW_JOB,
            *(job.job_id, job.client_id, job.idempotency_key, job.request_sha256, job.kind),
            *(job.partner_id, job.destination, job.purpose, job.legal_basis, job.transfer_id),
            _aware(job.created_at),
        )
        row = await conn.fetchrow(_JOB_BY_KEY, job.client_id, job.idempotency_key)
        return await _job(conn, row), status.endswith(" 1")


async def get_job(pool: Pool, job_id: str) -> JobRecord | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_JOB, job_id)
        return None if row is None else await _job(conn, row)


async def job_of_transfer(pool: Pool, transfer_id: str) -> JobRecord | None:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(_JOB_BY_TRANSFER, transfer_id)
        return None if row is None else await _job(conn, row)


async def _job(conn: Conn, row: Any) -> JobRecord:
    deliveries = {
        state: (int(n), int(entries))
        for state, n, entries in await conn.fetch(_JOB_DELIVERIES, row[0])
    }
    return JobRecord(
        job=_new_job(row, row[10]),
        records_done=row[11],
        input_complete=row[12],
        counts=json.loads(row[13]),
        deliveries=deliveries,
        updated_at=row[14],
    )


async def job_rejections(
    pool: Pool, job_id: str, *, after: RejectionKey, limit: int
) -> list[tuple[RejectionKey, Rejection]]:
    """At most `limit` of the job's rejections after the key `after`, in key order."""
    rows = await pool.fetch(_REJECTIONS, job_id, *after, limit)
    return [((line, ordinal), Rejection(line, *rest)) for line, ordinal, *rest in rows]


def _delivery(row: Any) -> PendingDelivery:
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


async def due_deliveries(
    pool: Pool, now: datetime, *, after_seq: int, limit: int, skip: Collection[str] = ()
) -> list[PendingDelivery]:
    rows = await pool.fetch(_DUE, _aware(now), after_seq, limit, list(skip))
    return [_delivery(r) for r in rows]


async def deliveries_in_state(
    pool: Pool, state: DeliveryState, *, after_seq: int, limit: int
) -> list[PendingDelivery]:
    return [_delivery(r) for r in await pool.fetch(_BY_STATE, state.value, after_seq, limit)]


async def delivery(pool: Pool, delivery_id: str) -> PendingDelivery | None:
    row = await pool.fetchrow(_ONE, delivery_id)
    return None if row is None else _delivery(row)


async def deliveries_of_transfer(pool: Pool, transfer_id: str) -> list[PendingDelivery]:
    return [_delivery(r) for r in await pool.fetch(_OF_TRANSFER, transfer_id)]


async def removal_checks_owed(pool: Pool, *, after_seq: int, limit: int) -> list[PendingDelivery]:
    return [_delivery(r) for r in await pool.fetch(_CHECKS_OWED, after_seq, limit)]


async def removal_checked(pool: Pool, delivery_id: str) -> None:
    await pool.execute(_CHECKED, delivery_id)


async def record_attempt(
    pool: Pool,
    delivery_id: str,
    *,
    attempts: int,
    next_attempt_at: datetime,
    error: str,
    now: datetime,
) -> None:
    await pool.execute(
        _ATTEMPTED, attempts, _aware(next_attempt_at), error, _aware(now), delivery_id
    )


async def replay_dead(pool: Pool, delivery_ids: Sequence[str], now: datetime) -> int:
    status: str = await pool.execute(_REPLAY, _aware(now), list(delivery_ids))
    return int(status.rpartition(" ")[2])


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


async def acquire(pool: Pool) -> Held:
    """A connection of the pool's, held by the caller until `release`."""
    conn: Held = await pool.acquire()
    return conn


async def release(pool: Pool, conn: Held) -> None:
    await pool.release(conn)


async def advisory_lock(pool: Pool, conn: Conn, key: int) -> None:
    """Wait for the session advisory lock `key` on `conn` (the job_feeding lock)."""
    await conn.execute("SELECT pg_advisory_lock($1)", key)


async def advisory_unlock(pool: Pool, conn: Conn, key: int) -> None:
    await conn.execute("SELECT pg_advisory_unlock($1)", key)
