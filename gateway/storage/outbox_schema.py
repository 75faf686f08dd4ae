"""Migration 3: the delivery outbox and provision jobs (gateway/delivery/outbox.py), per dialect.

Unlike the log, these are working state: rows change as records are read and deliveries
happen. What was sent and when is proven by the transfer log, not by these tables.

    outbox          one request to send: exact bytes, idempotency key (delivery_id), state
    jobs            one provision job (an upload or an export): parameters, how far its input
                    has been read (records_done: the resume point), outcome counts
    job_rejections  the records of a job that were refused or invalid, or sent with a part
                    left out, with reasons (never the values), for the caller to download.
                    Migration 7 (rejections_schema_v7.py) keys it by (job_id, line, ordinal):
                    the key below, (job_id, line, code), kept one row per code and line
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
    """CREATE TABLE jobs (
        job_id TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        request_sha256 TEXT NOT NULL,
        kind TEXT NOT NULL,
        partner_id TEXT NOT NULL,
        destination TEXT,
        purpose TEXT NOT NULL,
        legal_basis TEXT NOT NULL,
        transfer_id TEXT NOT NULL UNIQUE,
        records_done INTEGER NOT NULL DEFAULT 0,
        input_complete INTEGER NOT NULL DEFAULT 0,
        counts TEXT NOT NULL DEFAULT '{}',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (client_id, idempotency_key))""",
    """CREATE TABLE job_rejections (
        job_id TEXT NOT NULL REFERENCES jobs (job_id),
        line INTEGER NOT NULL,
        subject_id TEXT,
        code TEXT NOT NULL,
        field TEXT,
        message TEXT NOT NULL,
        PRIMARY KEY (job_id, line, code)) WITHOUT ROWID""",
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
    """CREATE TABLE jobs (
        job_id text PRIMARY KEY,
        client_id text NOT NULL,
        idempotency_key text NOT NULL,
        request_sha256 text NOT NULL,
        kind text NOT NULL,
        partner_id text NOT NULL,
        destination text,
        purpose text NOT NULL,
        legal_basis text NOT NULL,
        transfer_id text NOT NULL UNIQUE,
        records_done bigint NOT NULL DEFAULT 0,
        input_complete boolean NOT NULL DEFAULT false,
        counts jsonb NOT NULL DEFAULT '{}',
        created_at timestamptz NOT NULL,
        updated_at timestamptz NOT NULL,
        UNIQUE (client_id, idempotency_key))""",
    """CREATE TABLE job_rejections (
        job_id text NOT NULL REFERENCES jobs (job_id),
        line bigint NOT NULL,
        subject_id text,
        code text NOT NULL,
        field text,
        message text NOT NULL,
        PRIMARY KEY (job_id, line, code))""",
)
