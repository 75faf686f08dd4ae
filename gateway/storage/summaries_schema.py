"""Migration 5: the statistical summaries attribute-estimation recipients post back, per dialect.

    summaries   one accepted summary: partner, the recipient's upload id, the client that
                posted it, its dimensions and cell count, the summary as checked (JSON:
                upload_id, dimensions, cells), the SHA-256 of the bytes received (the log
                entry's payload_sha256) and the log entry that records its receipt

Only summaries that passed `gateway.adapters.attribute_export.check_summary` are stored: no
cell under the contract's minimum, no per-person key. A refused one is not kept anywhere (its
refusal is in the transfer log, with the SHA-256 of what came and never its content). One
summary per (partner, upload id). Rows are never updated (the database refuses it); they
hold statistics, not personal data, so no retention rule deletes them.
"""

from __future__ import annotations

from typing import Final

SQLITE_SUMMARIES: Final[tuple[str, ...]] = (
    """CREATE TABLE summaries (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        summary_id TEXT NOT NULL UNIQUE,
        partner_id TEXT NOT NULL,
        upload_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        dimensions TEXT NOT NULL,
        cells INTEGER NOT NULL CHECK (cells > 0),
        body TEXT NOT NULL,
        body_sha256 TEXT NOT NULL,
        entry_id TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        UNIQUE (partner_id, upload_id))""",
    "CREATE INDEX summaries_partner ON summaries (partner_id, seq)",
    """CREATE TRIGGER summaries_no_update BEFORE UPDATE ON summaries
        BEGIN SELECT RAISE(ABORT, 'summaries is append-only'); END""",
)

# refuse_change() is migration 1's trigger function.
POSTGRES_SUMMARIES: Final[tuple[str, ...]] = (
    """CREATE TABLE summaries (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        summary_id text NOT NULL UNIQUE,
        partner_id text NOT NULL,
        upload_id text NOT NULL,
        client_id text NOT NULL,
        dimensions jsonb NOT NULL,
        cells integer NOT NULL CHECK (cells > 0),
        body text NOT NULL,
        body_sha256 text NOT NULL,
        entry_id text NOT NULL,
        received_at timestamptz NOT NULL,
        UNIQUE (partner_id, upload_id))""",
    "CREATE INDEX summaries_partner ON summaries (partner_id, seq)",
    """CREATE TRIGGER summaries_no_update BEFORE UPDATE ON summaries
        FOR EACH ROW EXECUTE FUNCTION refuse_change()""",
)
