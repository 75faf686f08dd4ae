"""The outbox on PostgreSQL: statements run on a connection the caller holds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import asyncpg

from gateway.delivery.outbox import OutboxRow

_INSERT: Final = """INSERT INTO outbox (delivery_id, job_id, partner_id, operation, transfer_id,
    first_index, entry_count, content_type, payload, meta, next_attempt_at, created_at,
    updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $11)"""


async def insert_outbox(
    conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy[Any],
    rows: Sequence[OutboxRow],
    first_index: int,
) -> None:
    """Insert pending rows inside the caller's transaction. Raises asyncpg errors;
    ValueError for a naive time."""
    params = []
    for r in rows:
        if r.created_at.utcoffset() is None:
            raise ValueError("naive datetime: the store keeps timezone-aware instants")
        params.append(
            (
                r.delivery_id,
                r.job_id,
                r.partner_id,
                r.operation,
                r.transfer_id,
                first_index + r.entries_offset,
                r.entry_count,
                r.content_type,
                r.payload,
                r.meta,
                r.created_at,
            )
        )
    if params:
        await conn.executemany(_INSERT, params)
