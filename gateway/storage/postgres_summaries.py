"""Summaries on PostgreSQL (the twin of sqlite_summaries.py). Functions take the pool and
raise asyncpg errors; PostgresStore translates them into StorageError."""

from __future__ import annotations

import json
from typing import Any, Final, TypeAlias

import asyncpg

from gateway.storage.sqlite_summaries import SummaryRow

Pool: TypeAlias = "asyncpg.Pool[Any]"

_INSERT: Final = """INSERT INTO summaries (summary_id, partner_id, upload_id, client_id,
    dimensions, cells, body, body_sha256, entry_id, received_at)
    VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10)
    ON CONFLICT (partner_id, upload_id) DO NOTHING RETURNING seq"""
_BY_UPLOAD: Final = """SELECT seq, summary_id, partner_id, upload_id, client_id,
    dimensions::text, cells, body, body_sha256, entry_id, received_at FROM summaries
    WHERE partner_id = $1 AND upload_id = $2"""
_OF_PARTNER: Final = """SELECT seq, summary_id, partner_id, upload_id, client_id,
    dimensions::text, cells, body, body_sha256, entry_id, received_at FROM summaries
    WHERE partner_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"""


async def insert_summary(pool: Pool, row: SummaryRow) -> tuple[tuple[Any, ...], bool]:
    """Insert unless the (partner, upload) has a summary: the stored row and whether it is
    new. Raises asyncpg errors; ValueError for a naive time."""
    if row[9].tzinfo is None:
        raise ValueError("naive datetime: the store keeps timezone-aware instants")
    params = (*row[:4], json.dumps(list(row[4])), *row[5:])
    async with pool.acquire() as conn, conn.transaction():
        created = await conn.fetchval(_INSERT, *params) is not None
        stored = await conn.fetchrow(_BY_UPLOAD, row[1], row[2])
    assert stored is not None, "inserted or found in this transaction"
    return _out(stored), created


async def summary_of_upload(pool: Pool, partner_id: str, upload_id: str) -> tuple[Any, ...] | None:
    found = await pool.fetchrow(_BY_UPLOAD, partner_id, upload_id)
    return None if found is None else _out(found)


async def partner_summaries(
    pool: Pool, partner_id: str, *, after_seq: int, limit: int
) -> list[tuple[Any, ...]]:
    return [_out(r) for r in await pool.fetch(_OF_PARTNER, partner_id, after_seq, limit)]


def _out(row: asyncpg.Record) -> tuple[Any, ...]:
    values = tuple(row.values())
    return (*values[:5], json.loads(values[5]), *values[6:])
