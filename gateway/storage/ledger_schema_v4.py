"""Migration 4: the transfer log's content in chunks, a subject index, nodes from level 4.

Replaces `ledger_entries` (one wide row per entry: the leaf inline, ten columns, a unique
entry_id and four secondary indexes) by (see gateway/storage/ledger_layout.py):

    ledger_chunks    first_idx, count, transfer_id, partner_id, purpose, time_min, time_max,
                     retain_until, codec, data: the content of up to 256 consecutive entries
                     of one transfer, partner and purpose. Never updated; deleted only once
                     retain_until is before the database's own UTC date.
    ledger_subjects  (subject_id, idx): who an entry is about (APPI Art. 33(5) disclosures).
                     Never updated; a row goes only with its chunk (the purge).

and keeps in `ledger_nodes` only the nodes of level >= 4 (lower ones are computed from the
leaf hashes on read). Existing data moves in SQL: each `ledger_entries` row becomes a chunk
of codec 'none' (count 1, the leaf as is) and a `ledger_subjects` row.

Frozen once released, like every migration: the literals here (256, level 4) are what
CHUNK_MAX and NODE_MIN_LEVEL were when it landed; changing those needs a new migration.
"""

from __future__ import annotations

from typing import Final

SQLITE_V4: Final[tuple[str, ...]] = (
    """CREATE TABLE ledger_chunks (
        first_idx INTEGER PRIMARY KEY,
        count INTEGER NOT NULL CHECK (count BETWEEN 1 AND 256),
        transfer_id TEXT NOT NULL,
        partner_id TEXT NOT NULL,
        purpose TEXT NOT NULL,
        time_min INTEGER NOT NULL,
        time_max INTEGER NOT NULL,
        retain_until TEXT NOT NULL,
        codec TEXT NOT NULL CHECK (codec IN ('zlib', 'none')),
        data BLOB NOT NULL,
        CHECK (codec = 'zlib' OR count = 1),
        CHECK (time_min <= time_max))""",
    # A SQLite index ends with the rowid (first_idx): (transfer_id) is (transfer_id, first_idx).
    "CREATE INDEX ledger_chunks_transfer ON ledger_chunks (transfer_id)",
    "CREATE INDEX ledger_chunks_partner ON ledger_chunks (partner_id)",
    "CREATE INDEX ledger_chunks_time ON ledger_chunks (time_min)",
    """CREATE TABLE ledger_subjects (
        subject_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        PRIMARY KEY (subject_id, idx)) WITHOUT ROWID""",
    # Move the content before the triggers exist (they do not refuse inserts anyway).
    """INSERT INTO ledger_chunks (first_idx, count, transfer_id, partner_id, purpose, time_min,
            time_max, retain_until, codec, data)
        SELECT idx, 1, transfer_id, partner_id, purpose, time, time, retain_until, 'none', leaf
        FROM ledger_entries ORDER BY idx""",
    """INSERT INTO ledger_subjects (subject_id, idx)
        SELECT subject_id, idx FROM ledger_entries ORDER BY subject_id, idx""",
    """CREATE TRIGGER ledger_chunks_no_update BEFORE UPDATE ON ledger_chunks
        BEGIN SELECT RAISE(ABORT, 'ledger_chunks is append-only'); END""",
    # APPI Art. 29(2) / PPC Rules Art. 21: a record is kept until its retain_until; only the
    # retention purge may delete it, and only after that day (UTC).
    """CREATE TRIGGER ledger_chunks_no_early_delete BEFORE DELETE ON ledger_chunks
        WHEN OLD.retain_until >= date('now')
        BEGIN SELECT RAISE(ABORT, 'ledger_chunks: retention period not over'); END""",
    """CREATE TRIGGER ledger_subjects_no_update BEFORE UPDATE ON ledger_subjects
        BEGIN SELECT RAISE(ABORT, 'ledger_subjects is append-only'); END""",
    # The index row of an entry goes only after the entry's content (its chunk) went.
    """CREATE TRIGGER ledger_subjects_no_early_delete BEFORE DELETE ON ledger_subjects
        WHEN EXISTS (SELECT 1 FROM ledger_chunks WHERE first_idx <= OLD.idx
            AND first_idx > OLD.idx - 256 AND first_idx + count > OLD.idx)
        BEGIN SELECT RAISE(ABORT, 'ledger_subjects: retention period of its entry not over');
        END""",
    # Nodes below level 4 are computed from the leaf hashes from now on.
    "DROP TRIGGER ledger_nodes_no_delete",
    "DELETE FROM ledger_nodes WHERE level < 4",
    """CREATE TRIGGER ledger_nodes_no_delete BEFORE DELETE ON ledger_nodes
        BEGIN SELECT RAISE(ABORT, 'ledger_nodes is append-only'); END""",
    # Its triggers first: dropping the table must not depend on how SQLite treats them.
    "DROP TRIGGER ledger_entries_no_update",
    "DROP TRIGGER ledger_entries_no_early_delete",
    "DROP TABLE ledger_entries",
)

POSTGRES_V4: Final[tuple[str, ...]] = (
    """CREATE TABLE ledger_chunks (
        first_idx bigint PRIMARY KEY,
        count integer NOT NULL CHECK (count BETWEEN 1 AND 256),
        transfer_id text NOT NULL,
        partner_id text NOT NULL,
        purpose text NOT NULL,
        time_min timestamptz NOT NULL,
        time_max timestamptz NOT NULL,
        retain_until date NOT NULL,
        codec text NOT NULL CHECK (codec IN ('zlib', 'none')),
        data bytea NOT NULL,
        CHECK (codec = 'zlib' OR count = 1),
        CHECK (time_min <= time_max))""",
    # The compressed data is already small and rarely repeats: keep it inline, uncompressed
    # by TOAST (which would only spend CPU trying).
    "ALTER TABLE ledger_chunks ALTER COLUMN data SET STORAGE EXTERNAL",
    "CREATE INDEX ledger_chunks_transfer ON ledger_chunks (transfer_id, first_idx)",
    "CREATE INDEX ledger_chunks_partner ON ledger_chunks (partner_id, first_idx)",
    "CREATE INDEX ledger_chunks_time ON ledger_chunks (time_min)",
    """CREATE TABLE ledger_subjects (
        subject_id text NOT NULL,
        idx bigint NOT NULL,
        PRIMARY KEY (subject_id, idx))""",
    """INSERT INTO ledger_chunks (first_idx, count, transfer_id, partner_id, purpose, time_min,
            time_max, retain_until, codec, data)
        SELECT idx, 1, transfer_id, partner_id, purpose, time, time, retain_until, 'none', leaf
        FROM ledger_entries ORDER BY idx""",
    """INSERT INTO ledger_subjects (subject_id, idx)
        SELECT subject_id, idx FROM ledger_entries ORDER BY subject_id, idx""",
    # APPI Art. 29(2) / PPC Rules Art. 21: a record is kept until its retain_until; only the
    # retention purge may delete it, and only after that day (UTC, as SQLite's date('now')).
    """CREATE FUNCTION ledger_chunks_retained() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                RAISE EXCEPTION 'ledger_chunks is append-only';
            END IF;
            IF OLD.retain_until >= (now() AT TIME ZONE 'UTC')::date THEN
                RAISE EXCEPTION 'ledger_chunks: retention period not over';
            END IF;
            RETURN OLD;
        END $$""",
    """CREATE TRIGGER ledger_chunks_retained BEFORE UPDATE OR DELETE ON ledger_chunks
        FOR EACH ROW EXECUTE FUNCTION ledger_chunks_retained()""",
    # The index row of an entry goes only after the entry's content (its chunk) went.
    """CREATE FUNCTION ledger_subjects_retained() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                RAISE EXCEPTION 'ledger_subjects is append-only';
            END IF;
            IF EXISTS (SELECT 1 FROM ledger_chunks AS c WHERE c.first_idx <= OLD.idx
                    AND c.first_idx > OLD.idx - 256 AND c.first_idx + c.count > OLD.idx) THEN
                RAISE EXCEPTION 'ledger_subjects: retention period of its entry not over';
            END IF;
            RETURN OLD;
        END $$""",
    """CREATE TRIGGER ledger_subjects_retained BEFORE UPDATE OR DELETE ON ledger_subjects
        FOR EACH ROW EXECUTE FUNCTION ledger_subjects_retained()""",
    # TRUNCATE skips row triggers: refuse it outright (refuse_change() is migration 1's).
    *(
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()"""
        for table in ("ledger_chunks", "ledger_subjects")
    ),
    # Nodes below level 4 are computed from the leaf hashes from now on.
    "DROP TRIGGER ledger_nodes_append_only ON ledger_nodes",
    "DELETE FROM ledger_nodes WHERE level < 4",
    """CREATE TRIGGER ledger_nodes_append_only BEFORE UPDATE OR DELETE ON ledger_nodes
        FOR EACH ROW EXECUTE FUNCTION refuse_change()""",
    # Its triggers go with the table; the function only it used goes too.
    "DROP TABLE ledger_entries",
    "DROP FUNCTION ledger_entries_retained()",
)
