"""Summaries on SQLite: statements run on the store's worker thread (see sqlite.py).

A row goes in and comes out as a plain tuple (gateway/storage/summary_store.py builds the
records): seq first on the way out; dimensions as a JSON array, instants as microseconds.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final, TypeAlias

from gateway.storage.sqlite_time import from_micros, to_micros

# summary_id, partner_id, upload_id, client_id, dimensions, cells, body, body_sha256,
# entry_id, received_at
SummaryRow: TypeAlias = tuple[str, str, str, str, Sequence[str], int, str, str, str, datetime]

_INSERT: Final = """INSERT INTO summaries (summary_id, partner_id, upload_id, client_id,
    dimensions, cells, body, body_sha256, entry_id, received_at)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (partner_id, upload_id) DO NOTHING"""
_BY_UPLOAD: Final = """SELECT seq, summary_id, partner_id, upload_id, client_id, dimensions,
    cells, body, body_sha256, entry_id, received_at FROM summaries
    WHERE partner_id = ? AND upload_id = ?"""
_OF_PARTNER: Final = """SELECT seq, summary_id, partner_id, upload_id, client_id, dimensions,
    cells, body, body_sha256, entry_id, received_at FROM summaries
    WHERE partner_id = ? AND seq > ? ORDER BY seq LIMIT ?"""


def insert_summary(conn: sqlite3.Connection, row: SummaryRow) -> tuple[tuple[Any, ...], bool]:
    """Insert unless the (partner, upload) has a summary: the stored row and whether it is
    new. Raises sqlite3.Error; ValueError for a naive time."""
    params = (*row[:4], json.dumps(list(row[4])), *row[5:9], to_micros(row[9]))
    conn.execute("BEGIN IMMEDIATE")
    try:
        created = conn.execute(_INSERT, params).rowcount == 1
        stored = conn.execute(_BY_UPLOAD, (row[1], row[2])).fetchone()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return _out(stored), created


def summary_of_upload(
    conn: sqlite3.Connection, partner_id: str, upload_id: str
) -> tuple[Any, ...] | None:
    found = conn.execute(_BY_UPLOAD, (partner_id, upload_id)).fetchone()
    return None if found is None else _out(found)


def partner_summaries(
    conn: sqlite3.Connection, partner_id: str, *, after_seq: int, limit: int
) -> list[tuple[Any, ...]]:
    return [_out(r) for r in conn.execute(_OF_PARTNER, (partner_id, after_seq, limit))]


def _out(row: Sequence[Any]) -> tuple[Any, ...]:
    return (*row[:5], json.loads(row[5]), *row[6:10], from_micros(row[10]))
