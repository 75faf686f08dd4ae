"""The outbox on SQLite: statements run on the store's worker thread (see sqlite.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from gateway.delivery.outbox import OutboxRow
from gateway.storage.sqlite_time import to_micros

_INSERT: Final = """INSERT INTO outbox (delivery_id, job_id, partner_id, operation, transfer_id,
    first_index, entry_count, content_type, payload, meta, next_attempt_at, created_at,
    updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


def insert_outbox(conn: sqlite3.Connection, rows: Sequence[OutboxRow], first_index: int) -> None:
    """Insert pending rows inside the caller's transaction; `first_index` is the log index of
    the append call's first record. Raises sqlite3.Error; ValueError for a naive time."""
    params = []
    for r in rows:
        at = to_micros(r.created_at)
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
                at,
                at,
                at,
            )
        )
    conn.executemany(_INSERT, params)
