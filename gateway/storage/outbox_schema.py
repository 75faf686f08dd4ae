"""Migration 3: the delivery outbox (gateway/delivery/outbox.py), per dialect.

Unlike the log, the outbox is working state: its rows change state as deliveries happen. What
was sent and when is proven by the transfer log, not by this table.
"""

from __future__ import annotations

from typing import Final

SQLITE_OUTBOX: Final[tuple[str, ...]] = (
    """CREATE TABLE outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        delivery_id TEXT NOT NULL UNIQUE,
        job_id TEXT,
        partner_id TEXT NOT NULL,
        operation TEXT NOT NULL,
        transfer_id TEXT NOT NULL,
        first_index INTEGER NOT NULL,
        entry_count INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        payload BLOB NOT NULL,
        meta BLOB NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL)""",
    "CREATE INDEX outbox_due ON outbox (state, next_attempt_at) WHERE state = 'pending'",
    "CREATE INDEX outbox_job ON outbox (job_id, seq)",
)

POSTGRES_OUTBOX: Final[tuple[str, ...]] = (
    """CREATE TABLE outbox (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        delivery_id text NOT NULL UNIQUE,
        job_id text,
        partner_id text NOT NULL,
        operation text NOT NULL,
        transfer_id text NOT NULL,
        first_index bigint NOT NULL,
        entry_count integer NOT NULL,
        content_type text NOT NULL,
        payload bytea NOT NULL,
        meta bytea NOT NULL,
        state text NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at timestamptz NOT NULL,
        last_error text,
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL)""",
    "CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending'",
    "CREATE INDEX outbox_job ON outbox (job_id, seq)",
)
