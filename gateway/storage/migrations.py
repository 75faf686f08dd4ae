"""Versioned schema migrations, one list per backend, recorded in `schema_migrations`.

A migration is applied once, inside one transaction with its record, so a crash leaves the
database either before or after it. Versions only ever grow; a released migration is never
edited (add a new one instead).

Tables (both backends; SQLite keeps timestamps as integer microseconds since the Unix epoch,
UTC, PostgreSQL as timestamptz; partners lists are JSON arrays, NULL meaning every partner):

    consent_events    seq, subject_id, purpose, action, effective_at, notice_version, channel,
                      foreign_disclosure_version, recorded_at, recorded_by      append-only
    discontinuances   seq, subject_id, partners, reason, requested_at, recorded_by  append-only
    clients           client_id, name, role, partners, key_sha256, created_at, revoked_at
    ledger_leaves, ledger_chunks, ledger_subjects, ledger_nodes, ledger_checkpoints
                      the transfer log: see gateway/ledger/store.py (SQLite: chunks' times in
                      microseconds, retain_until an ISO date text; PostgreSQL: timestamptz and
                      date). Migration 2 made it with ledger_entries; migration 4
                      (gateway/storage/ledger_schema_v4.py) moved that into chunks; migration 6
                      (ledger_schema_v6.py) stages SQLite's new subject index rows in
                      ledger_subjects_recent.
    outbox, jobs, job_rejections
                      deliveries to make, provision jobs and the records they did not send
                      (gateway/storage/outbox_schema.py); migration 7
                      (gateway/storage/rejections_schema_v7.py) keys job_rejections by
                      (job_id, line, ordinal); migration 8 (removal_check_schema_v8.py) adds
                      outbox.removal_check, the check for withdrawals an ingest's delivery owes
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.storage.ledger_schema_v4 import POSTGRES_V4, SQLITE_V4
from gateway.storage.ledger_schema_v6 import POSTGRES_V6, SQLITE_V6
from gateway.storage.outbox_schema import POSTGRES_OUTBOX, SQLITE_OUTBOX
from gateway.storage.rejections_schema_v7 import POSTGRES_V7, SQLITE_V7
from gateway.storage.removal_check_schema_v8 import POSTGRES_V8, SQLITE_V8, V8_NAME
from gateway.storage.summaries_schema import POSTGRES_SUMMARIES, SQLITE_SUMMARIES

if TYPE_CHECKING:  # the SQLite log writer process imports this module: no asyncpg there
    import asyncpg


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


# Rule 2 (consent carries evidence): a grant without notice version and channel cannot exist.
_ACTION_CHECKS = """
    CHECK (action IN ('grant', 'withdraw')),
    CHECK (action = 'withdraw' OR (notice_version IS NOT NULL AND channel IS NOT NULL))"""

# Migration 2: the transfer log (gateway/ledger/store.py). Level-0 nodes are not stored in
# ledger_nodes: ledger_leaves holds every leaf hash once and the stores read level 0 there.
_LEDGER_APPEND_ONLY = ("ledger_leaves", "ledger_nodes", "ledger_checkpoints")

_SQLITE_LEDGER: tuple[str, ...] = (
    """CREATE TABLE ledger_leaves (
        idx INTEGER PRIMARY KEY,
        leaf_hash BLOB NOT NULL CHECK (length(leaf_hash) = 32))""",
    """CREATE TABLE ledger_entries (
        idx INTEGER PRIMARY KEY,
        leaf BLOB NOT NULL,
        entry_id TEXT NOT NULL UNIQUE,
        transfer_id TEXT NOT NULL,
        time INTEGER NOT NULL,
        subject_id TEXT NOT NULL,
        partner_id TEXT NOT NULL,
        purpose TEXT NOT NULL,
        legal_basis TEXT NOT NULL,
        outcome TEXT NOT NULL,
        retain_until TEXT NOT NULL)""",
    # A SQLite index ends with the rowid (idx): (subject_id) serves `subject_id = ? AND
    # idx > ? ORDER BY idx` as one range scan, and so on.
    "CREATE INDEX ledger_entries_subject ON ledger_entries (subject_id)",
    "CREATE INDEX ledger_entries_partner ON ledger_entries (partner_id)",
    "CREATE INDEX ledger_entries_transfer ON ledger_entries (transfer_id)",
    "CREATE INDEX ledger_entries_time ON ledger_entries (time)",
    # Level 0 lives in ledger_leaves only: every leaf hash is stored once.
    """CREATE TABLE ledger_nodes (
        level INTEGER NOT NULL CHECK (level > 0),
        idx INTEGER NOT NULL,
        hash BLOB NOT NULL CHECK (length(hash) = 32),
        PRIMARY KEY (level, idx)) WITHOUT ROWID""",
    """CREATE TABLE ledger_checkpoints (
        size INTEGER PRIMARY KEY,
        root BLOB NOT NULL CHECK (length(root) = 32),
        note TEXT NOT NULL,
        created_at INTEGER NOT NULL)""",
    *(
        f"""CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"""
        for table in _LEDGER_APPEND_ONLY
        for verb in ("update", "delete")
    ),
    """CREATE TRIGGER ledger_entries_no_update BEFORE UPDATE ON ledger_entries
        BEGIN SELECT RAISE(ABORT, 'ledger_entries is append-only'); END""",
    # APPI Art. 29(2) / PPC Rules Art. 21: a record is kept until its retain_until; only the
    # retention purge may delete it, and only after that day (UTC).
    """CREATE TRIGGER ledger_entries_no_early_delete BEFORE DELETE ON ledger_entries
        WHEN OLD.retain_until >= date('now')
        BEGIN SELECT RAISE(ABORT, 'ledger_entries: retention period not over'); END""",
)

_POSTGRES_LEDGER: tuple[str, ...] = (
    """CREATE TABLE ledger_leaves (
        idx bigint PRIMARY KEY,
        leaf_hash bytea NOT NULL CHECK (length(leaf_hash) = 32))""",
    """CREATE TABLE ledger_entries (
        idx bigint PRIMARY KEY,
        leaf bytea NOT NULL,
        entry_id text NOT NULL UNIQUE,
        transfer_id text NOT NULL,
        time timestamptz NOT NULL,
        subject_id text NOT NULL,
        partner_id text NOT NULL,
        purpose text NOT NULL,
        legal_basis text NOT NULL,
        outcome text NOT NULL,
        retain_until date NOT NULL)""",
    # (column, idx): `column = $1 AND idx > $2 ORDER BY idx LIMIT n` is one index range scan.
    "CREATE INDEX ledger_entries_subject ON ledger_entries (subject_id, idx)",
    "CREATE INDEX ledger_entries_partner ON ledger_entries (partner_id, idx)",
    "CREATE INDEX ledger_entries_transfer ON ledger_entries (transfer_id, idx)",
    "CREATE INDEX ledger_entries_time ON ledger_entries (time)",
    # Level 0 lives in ledger_leaves only: every leaf hash is stored once.
    """CREATE TABLE ledger_nodes (
        level smallint NOT NULL CHECK (level > 0),
        idx bigint NOT NULL,
        hash bytea NOT NULL CHECK (length(hash) = 32),
        PRIMARY KEY (level, idx))""",
    """CREATE TABLE ledger_checkpoints (
        size bigint PRIMARY KEY,
        root bytea NOT NULL CHECK (length(root) = 32),
        note text NOT NULL,
        created_at timestamptz NOT NULL)""",
    # refuse_change() comes with migration 1.
    *(
        f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION refuse_change()"""
        for table in _LEDGER_APPEND_ONLY
    ),
    # APPI Art. 29(2) / PPC Rules Art. 21: a record is kept until its retain_until; only the
    # retention purge may delete it, and only after that day (UTC, as SQLite's date('now')).
    """CREATE FUNCTION ledger_entries_retained() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                RAISE EXCEPTION 'ledger_entries is append-only';
            END IF;
            IF OLD.retain_until >= (now() AT TIME ZONE 'UTC')::date THEN
                RAISE EXCEPTION 'ledger_entries: retention period not over';
            END IF;
            RETURN OLD;
        END $$""",
    """CREATE TRIGGER ledger_entries_retained BEFORE UPDATE OR DELETE ON ledger_entries
        FOR EACH ROW EXECUTE FUNCTION ledger_entries_retained()""",
    # TRUNCATE skips row triggers: refuse it outright.
    *(
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()"""
        for table in (*_LEDGER_APPEND_ONLY, "ledger_entries")
    ),
)

_V4_NAME = "transfer log: chunked content, subject index, nodes from level 4"
_V6_NAME = "transfer log: subject index rows staged in append order (SQLite)"
_V7_NAME = "job rejections keyed by (line, ordinal), not by code"

SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "consent events, discontinuances, clients",
        (
            f"""CREATE TABLE consent_events (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                subject_id TEXT NOT NULL,
                purpose TEXT NOT NULL,
                action TEXT NOT NULL,
                effective_at INTEGER NOT NULL,
                notice_version TEXT,
                channel TEXT,
                foreign_disclosure_version TEXT,
                recorded_at INTEGER NOT NULL,
                recorded_by TEXT NOT NULL,{_ACTION_CHECKS})""",
            """CREATE INDEX consent_events_current
                ON consent_events (subject_id, purpose, effective_at, seq)""",
            """CREATE TABLE discontinuances (
                seq INTEGER PRIMARY KEY AUTOINCREMENT,
                subject_id TEXT NOT NULL,
                partners TEXT,
                reason TEXT NOT NULL,
                requested_at INTEGER NOT NULL,
                recorded_by TEXT NOT NULL)""",
            "CREATE INDEX discontinuances_subject ON discontinuances (subject_id, seq)",
            """CREATE TABLE clients (
                client_id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                role TEXT NOT NULL,
                partners TEXT NOT NULL,
                key_sha256 TEXT NOT NULL UNIQUE,
                created_at INTEGER NOT NULL,
                revoked_at INTEGER)""",
            *(
                f"""CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table}
                    BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"""
                for table in ("consent_events", "discontinuances")
                for verb in ("update", "delete")
            ),
        ),
    ),
    Migration(2, "transfer log: leaves, entries, nodes, checkpoints", _SQLITE_LEDGER),
    Migration(3, "delivery outbox, provision jobs", SQLITE_OUTBOX),
    Migration(4, _V4_NAME, SQLITE_V4),
    Migration(5, "attribute-estimation summaries", SQLITE_SUMMARIES),
    Migration(6, _V6_NAME, SQLITE_V6),
    Migration(7, _V7_NAME, SQLITE_V7),
    Migration(8, V8_NAME, SQLITE_V8),
)

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "consent events, discontinuances, clients",
        (
            f"""CREATE TABLE consent_events (
                seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                subject_id text NOT NULL,
                purpose text NOT NULL,
                action text NOT NULL,
                effective_at timestamptz NOT NULL,
                notice_version text,
                channel text,
                foreign_disclosure_version text,
                recorded_at timestamptz NOT NULL,
                recorded_by text NOT NULL,{_ACTION_CHECKS})""",
            """CREATE INDEX consent_events_current
                ON consent_events (subject_id, purpose, effective_at, seq)""",
            """CREATE TABLE discontinuances (
                seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                subject_id text NOT NULL,
                partners jsonb,
                reason text NOT NULL,
                requested_at timestamptz NOT NULL,
                recorded_by text NOT NULL)""",
            "CREATE INDEX discontinuances_subject ON discontinuances (subject_id, seq)",
            """CREATE TABLE clients (
                client_id text PRIMARY KEY,
                name text NOT NULL,
                role text NOT NULL,
                partners jsonb NOT NULL,
                key_sha256 text NOT NULL UNIQUE,
                created_at timestamptz NOT NULL,
                revoked_at timestamptz)""",
            """CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$""",
            # Row triggers for UPDATE (also ON CONFLICT DO UPDATE) and DELETE; TRUNCATE skips
            # row triggers, so it gets its own statement trigger.
            *(
                f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                    FOR EACH ROW EXECUTE FUNCTION refuse_change()"""
                for table in ("consent_events", "discontinuances")
            ),
            *(
                f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
                    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()"""
                for table in ("consent_events", "discontinuances")
            ),
        ),
    ),
    Migration(2, "transfer log: leaves, entries, nodes, checkpoints", _POSTGRES_LEDGER),
    Migration(3, "delivery outbox, provision jobs", POSTGRES_OUTBOX),
    Migration(4, _V4_NAME, POSTGRES_V4),
    Migration(5, "attribute-estimation summaries", POSTGRES_SUMMARIES),
    Migration(6, _V6_NAME, POSTGRES_V6),
    Migration(7, _V7_NAME, POSTGRES_V7),
    Migration(8, V8_NAME, POSTGRES_V8),
)


class SchemaTooNew(Exception):
    """The database holds a migration this code does not know (a newer gateway ran on it)."""


def _pending(migrations: Sequence[Migration], applied: set[int]) -> list[Migration]:
    """Raises SchemaTooNew when `applied` holds a version beyond `migrations`."""
    known = {m.version for m in migrations}
    if unknown := applied - known:
        raise SchemaTooNew(
            f"the database has schema version {max(unknown)}, newer than this gateway "
            f"knows ({max(known)}); upgrade the gateway"
        )
    return [m for m in migrations if m.version not in applied]


def apply_sqlite(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> list[int]:
    """Apply pending migrations on an autocommit connection; returns the versions applied.

    BEGIN IMMEDIATE takes SQLite's write lock before reading `schema_migrations`, so a second
    process opening the same file waits (busy timeout) and then finds the work done.
    Raises sqlite3.Error (the store translates it) or SchemaTooNew.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"""
        )
        applied_at = time.time_ns() // 1000
        applied = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        todo = _pending(migrations, applied)
        for migration in todo:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.name, applied_at),
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return [m.version for m in todo]


async def apply_postgres(
    conn: asyncpg.Connection, migrations: Sequence[Migration], *, schema: str
) -> list[int]:
    """Create `schema` if absent and apply pending migrations in it; returns versions applied.

    A transaction-scoped advisory lock keyed on the schema name serialises concurrent openers
    (two instances starting at once); the second one finds the work done.
    Raises asyncpg errors (the store translates them) or SchemaTooNew.
    """
    async with conn.transaction():
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"gateway-migrate:{schema}"
        )
        # Only when absent: CREATE SCHEMA checks the CREATE privilege even with IF NOT EXISTS,
        # and a production role may own its schema without being allowed to create others.
        if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
            await conn.execute(f'CREATE SCHEMA "{schema}"')
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY, name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version FROM schema_migrations")
        todo = _pending(migrations, {row["version"] for row in rows})
        for migration in todo:
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
    return [m.version for m in todo]
