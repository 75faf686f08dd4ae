"""Migration 4 on a log written under migration 2's layout (a database at version 3).

The old layout is written by hand, as the gateway of versions 2 and 3 did: one ledger_entries
row and one leaf hash per entry, every node of level >= 1, a signed checkpoint. After the
store opens (and migrates) it, the log must verify as `gateway ledger verify` checks it, prove
inclusion and consistency against the old checkpoint, read, filter and purge the old entries,
and grow on top of them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.errors import StorageError
from gateway.keyring import Keyring, init_keyring
from gateway.ledger.checkpoint import checkpoint_body, sign_note, verifier_key
from gateway.ledger.service import Ledger
from gateway.ledger.store import LeafRecord, StoredCheckpoint
from gateway.ledger.transfer_filter import TransferFilter
from gateway.ledger.tree import TreeState, root_from_leaves, verify_consistency, verify_inclusion
from gateway.ledger.verify import Verifier
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore
from gateway.storage.sqlite_time import to_micros
from tests.conftest import BACKENDS, postgres_params, sqlite_params, store_on_old_schema
from tests.integration.test_ledger_store import EXPIRED, TODAY, record, subject_rows

ORIGIN = "gateway.test/transfer-log"
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
OLD = 40  # entries written under the old layout; 0, 5, 10, ... expired
V3 = 3

_ENTRY = """INSERT INTO ledger_entries (idx, leaf, entry_id, transfer_id, time, subject_id,
    partner_id, purpose, legal_basis, outcome, retain_until) VALUES ({})"""


def old_records() -> list[LeafRecord]:
    return [record(n, retain=EXPIRED if n % 5 == 0 else date(2999, 1, 1)) for n in range(OLD)]


def old_rows(sqlite: bool) -> dict[str, list[tuple[Any, ...]]]:
    """The rows of the old layout: leaves, entries, every node of level >= 1."""
    records = old_records()
    _, created = TreeState().extend([r.leaf_hash for r in records])
    entries = [
        (
            n,
            r.leaf,
            r.entry_id,
            r.transfer_id,
            to_micros(r.time) if sqlite else r.time,
            r.subject_id,
            r.partner_id,
            r.purpose,
            r.legal_basis,
            r.outcome,
            r.retain_until.isoformat() if sqlite else r.retain_until,
        )
        for n, r in enumerate(records)
    ]
    return {
        "leaves": [(n, r.leaf_hash) for n, r in enumerate(records)],
        "entries": entries,
        "nodes": [node for node in created if node[0] > 0],
    }


def signed(keyring: Keyring, size: int) -> StoredCheckpoint:
    root = root_from_leaves([r.leaf_hash for r in old_records()[:size]])
    note = sign_note(checkpoint_body(ORIGIN, size, root), ORIGIN, keyring.signing_key())
    return StoredCheckpoint(size=size, root=root, note=note, created_at=NOW)


def fill_sqlite(conn: sqlite3.Connection, checkpoint: StoredCheckpoint) -> None:
    rows = old_rows(sqlite=True)
    conn.executemany("INSERT INTO ledger_leaves VALUES (?, ?)", rows["leaves"])
    conn.executemany(_ENTRY.format(sqlite_params(11)), rows["entries"])
    conn.executemany("INSERT INTO ledger_nodes VALUES (?, ?, ?)", rows["nodes"])
    c = checkpoint
    conn.execute(
        "INSERT INTO ledger_checkpoints VALUES (?, ?, ?, ?)",
        (c.size, c.root, c.note, to_micros(c.created_at)),
    )


async def fill_postgres(conn: asyncpg.Connection[Any], checkpoint: StoredCheckpoint) -> None:
    rows = old_rows(sqlite=False)
    await conn.executemany("INSERT INTO ledger_leaves VALUES ($1, $2)", rows["leaves"])
    placeholders = postgres_params(11)
    await conn.executemany(_ENTRY.format(placeholders), rows["entries"])
    await conn.executemany("INSERT INTO ledger_nodes VALUES ($1, $2, $3)", rows["nodes"])
    c = checkpoint
    await conn.execute(
        "INSERT INTO ledger_checkpoints VALUES ($1, $2, $3, $4)",
        c.size,
        c.root,
        c.note,
        c.created_at,
    )


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return init_keyring(tmp_path / "keys", NOW)[0]


@pytest.fixture(params=BACKENDS)
async def migrated(
    request: pytest.FixtureRequest, tmp_path: Path, keyring: Keyring
) -> AsyncIterator[SqliteStore | PostgresStore]:
    """A store opened on a version-3 database holding OLD entries and a checkpoint of 30."""
    checkpoint = signed(keyring, 30)

    async def postgres(conn: asyncpg.Connection[Any]) -> None:
        await fill_postgres(conn, checkpoint)

    async with store_on_old_schema(
        request.param, tmp_path, V3, lambda conn: fill_sqlite(conn, checkpoint), postgres
    ) as store:
        yield store


async def rows(store: SqliteStore | PostgresStore, sql: str) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in await store.execute_sql(sql)]


async def test_the_migrated_log_verifies_and_proves(
    migrated: SqliteStore | PostgresStore, keyring: Keyring
) -> None:
    versions = await rows(migrated, "SELECT version FROM schema_migrations ORDER BY version")
    assert (4,) in versions  # and whatever came after it
    with pytest.raises(StorageError):
        await migrated.execute_sql("SELECT 1 FROM ledger_entries")
    levels = await rows(migrated, "SELECT DISTINCT level FROM ledger_nodes ORDER BY level")
    assert levels == [(4,), (5,)]
    chunks = await rows(migrated, "SELECT first_idx, count, codec FROM ledger_chunks")
    assert sorted(chunks) == [(n, 1, "none") for n in range(OLD)]

    records = old_records()
    leaves = await migrated.ledger_leaves(0, OLD)
    assert [(x.index, x.leaf_hash, x.leaf) for x in leaves] == [
        (n, r.leaf_hash, r.leaf) for n, r in enumerate(records)
    ]
    vkey = verifier_key(ORIGIN, keyring.signing_public_key())
    verifier = Verifier(await migrated.ledger_checkpoints(), vkeys=[vkey], origin=ORIGIN)
    verifier.feed(leaves)
    report = verifier.finish()
    assert report.ok, report.failure
    assert (report.entries, report.checkpoints) == (OLD, 1)

    ledger = Ledger(store=migrated, keyring=keyring, origin=ORIGIN, clock=lambda: NOW)
    await ledger.start()
    try:
        old = (await migrated.ledger_checkpoints())[0]
        await ledger.append([record(n) for n in range(OLD, OLD + 9)])  # on top of the old tree
        new = await ledger.checkpoint()
        hashes = [r.leaf_hash for r in records] + [record(n).leaf_hash for n in range(OLD, 49)]
        assert new.size == 49
        assert new.root == root_from_leaves(hashes)
        proof = await ledger.consistency_proof(old.size, new.size)
        assert verify_consistency(old.size, new.size, proof, old.root, new.root)
        for index in (0, 7, 29, 33, 48):
            path = await ledger.inclusion_proof(index, new.size)
            assert verify_inclusion(hashes[index], index, new.size, path, new.root)
    finally:
        await ledger.stop()
    new_chunks = await rows(migrated, f"SELECT codec FROM ledger_chunks WHERE first_idx >= {OLD}")
    assert set(new_chunks) == {("zlib",)}


async def test_old_entries_are_found_and_purged(migrated: SqliteStore | PostgresStore) -> None:
    records = old_records()
    flt = TransferFilter(subject_id="s-3", outcome="allowed")
    expected = [
        n for n, r in enumerate(records) if r.subject_id == "s-3" and r.outcome == "allowed"
    ]
    found = await migrated.ledger_find(flt, after=-1, limit=100)
    assert [x.index for x in found] == expected
    flt = TransferFilter(partner_id=records[1].partner_id, legal_basis="")
    expected = [
        n
        for n, r in enumerate(records)
        if r.partner_id == records[1].partner_id and r.legal_basis == ""
    ]
    assert [x.index for x in await migrated.ledger_find(flt, after=-1, limit=100)] == expected
    assert [x.index for x in await migrated.ledger_transfer("t-1")] == list(range(10, 20))

    assert await migrated.ledger_purge(TODAY) == OLD // 5
    leaves = await migrated.ledger_leaves(0, OLD)
    assert [x.leaf is None for x in leaves] == [n % 5 == 0 for n in range(OLD)]
    subjects = await subject_rows(migrated)
    assert [idx for _, idx in subjects] == [n for n in range(OLD) if n % 5]


async def test_the_old_tables_triggers_and_function_are_gone(
    migrated: SqliteStore | PostgresStore,
) -> None:
    if isinstance(migrated, SqliteStore):
        names = await rows(migrated, "SELECT name FROM sqlite_master WHERE name LIKE '%entries%'")
    else:
        names = await rows(
            migrated,
            """SELECT p.proname FROM pg_proc AS p
                   JOIN pg_namespace AS n ON n.oid = p.pronamespace
                   WHERE n.nspname = current_schema() AND p.proname LIKE 'ledger_entries%'
               UNION ALL SELECT t.tgname FROM pg_trigger AS t
                   JOIN pg_class AS c ON c.oid = t.tgrelid
                   JOIN pg_namespace AS n ON n.oid = c.relnamespace
                   WHERE n.nspname = current_schema() AND t.tgname LIKE 'ledger_entries%'""",
        )
    assert names == []
    with pytest.raises(StorageError, match="append-only"):
        await migrated.execute_sql("DELETE FROM ledger_nodes")
