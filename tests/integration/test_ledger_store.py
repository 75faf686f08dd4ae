"""The LedgerStore contract (gateway/ledger/store.py) against SQLite and PostgreSQL alike.

Proofs are computed from the stored nodes (level 0 read from ledger_leaves) and compared with
the same proofs computed from every leaf hash; the database triggers are exercised with raw
SQL, since no store method would ever issue the statements they refuse.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.delivery.outbox import OutboxRow
from gateway.errors import StorageError
from gateway.ledger.canonical import canonicalize
from gateway.ledger.entries import utc_text
from gateway.ledger.store import LeafRecord, LedgerStore, StoredCheckpoint
from gateway.ledger.transfer_filter import TransferFilter
from gateway.ledger.tree import (
    EMPTY_ROOT,
    TreeState,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    perfect_subtrees,
    range_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from gateway.storage import Store, sqlite_ledger
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore
from tests.conftest import BACKENDS, fresh_store, open_test_store

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
EXPIRED = date(2020, 1, 1)  # before any date these tests run on
KEPT = date(2999, 1, 1)
TODAY = datetime.now(UTC).date()  # the databases' triggers compare with the UTC date
PARTNERS = ("google-customer-match", "sample-fraud-provider")
PURPOSES = ("ad_customer_match", "fraud_check")
BASES = ("consent", "laws_and_regulations", "")  # "": null in the entry (a receipt)
OUTCOMES = ("allowed", "denied", "delivered")


@pytest.fixture(params=[*BACKENDS, "sqlite-process"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """The shared `store` backends, and SQLite with its appends in a child process (what
    `gateway serve` runs): the contract holds for each."""
    async with fresh_store(request.param, tmp_path) as opened:
        yield opened


def record(
    n: int,
    *,
    retain: date = KEPT,
    transfer: str | None = None,
    partner: str | None = None,
    purpose: str | None = None,
) -> LeafRecord:
    """Entry n of a deterministic log: fields cycle with different periods, so consecutive
    entries differ in partner (one chunk each) unless `partner` and `purpose` are given."""
    at = T0 + timedelta(minutes=n)
    basis = BASES[n % 5 % 3]
    entry = {
        "entry_id": f"e-{n:06d}",
        "transfer_id": transfer or f"t-{n // 10}",
        "time": utc_text(at),
        "subject": {"id": f"s-{n % 7}", "key": "k1:" + "ab" * 32},
        "partner": {"id": partner or PARTNERS[n % 2]},
        "purpose": purpose or PURPOSES[n % 3 % 2],
        "legal_basis": basis or None,
        "outcome": OUTCOMES[n % 3],
        "items": [{"field": "email", "transform": "sha256"}],
        "recording": {"method": "single", "retain_until": retain.isoformat()},
    }
    leaf = canonicalize(entry)
    return LeafRecord(
        leaf=leaf,
        leaf_hash=leaf_hash(leaf),
        entry_id=entry["entry_id"],
        transfer_id=entry["transfer_id"],
        time=at,
        subject_id=entry["subject"]["id"],
        partner_id=entry["partner"]["id"],
        purpose=entry["purpose"],
        legal_basis=basis,
        outcome=entry["outcome"],
        retain_until=retain,
    )


def run_record(n: int, *, retain: date = KEPT, run: int = 20) -> LeafRecord:
    """Entry n of a log of transfers of `run` entries each, one partner and purpose per
    transfer: appended together, a transfer's entries share chunks."""
    t = n // run
    return record(
        n, retain=retain, transfer=f"run-{t}", partner=PARTNERS[t % 2], purpose=PURPOSES[t % 3 % 2]
    )


async def append_in_batches(
    store: LedgerStore, records: Sequence[LeafRecord], seed: int, *, most: int = 9
) -> None:
    rnd = random.Random(seed)
    done = 0
    while done < len(records):
        batch = records[done : done + rnd.randint(1, most)]
        assert await store.ledger_append(batch) == done
        done += len(batch)


def outbox_row(delivery: str, offset: int, count: int = 1) -> OutboxRow:
    return OutboxRow(
        delivery_id=delivery,
        job_id=None,
        partner_id=PARTNERS[0],
        operation="ingest",
        transfer_id="t-0",
        entries_offset=offset,
        entry_count=count,
        content_type="application/json",
        payload=b"{}",
        meta=b"",
        created_at=T0,
    )


def ledger_of(store: Store) -> LedgerStore:
    assert isinstance(store, SqliteStore | PostgresStore)
    return store


async def raw_sql(store: LedgerStore, sql: str) -> list[Any]:
    assert isinstance(store, SqliteStore | PostgresStore)
    return list(await store.execute_sql(sql))


async def subject_rows(store: LedgerStore) -> list[tuple[str, int]]:
    """Every subject index row by idx (on SQLite, the merged and the staged ones)."""
    sql = "SELECT subject_id, idx FROM ledger_subjects"
    if isinstance(store, SqliteStore):
        sql += " UNION ALL SELECT subject_id, idx FROM ledger_subjects_recent"
    return sorted(((row[0], row[1]) for row in await raw_sql(store, sql)), key=lambda r: r[1])


@pytest.fixture
def ledger(store: Store) -> LedgerStore:
    return ledger_of(store)


@pytest.fixture
def small_merges(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> int:
    """SQLite merges its staged subject index rows every 16 entries instead of 16,384."""
    if request.node.callspec.params.get("store") == "sqlite-process":
        pytest.skip("the writer process keeps its own merge interval")
    monkeypatch.setattr(sqlite_ledger, "_MERGE_EVERY", 16)
    return 16


# appends, leaves, nodes


async def test_an_empty_log(ledger: LedgerStore) -> None:
    assert await ledger.ledger_size() == 0
    assert await ledger.ledger_leaves(0, 10) == []
    assert await ledger.ledger_nodes([]) == {}
    assert await ledger.ledger_checkpoints() == []
    assert await ledger.ledger_checkpoints(latest_only=True) == []
    assert await ledger.ledger_find(TransferFilter(), after=-1, limit=10) == []


async def test_appends_take_consecutive_indexes(ledger: LedgerStore) -> None:
    records = [record(n) for n in range(13)]
    assert await ledger.ledger_append(records[:5]) == 0
    assert await ledger.ledger_append(records[5:6]) == 5
    assert await ledger.ledger_append(records[6:]) == 6
    assert await ledger.ledger_size() == 13
    leaves = await ledger.ledger_leaves(0, 20)
    assert [(x.index, x.leaf_hash, x.leaf) for x in leaves] == [
        (n, r.leaf_hash, r.leaf) for n, r in enumerate(records)
    ]
    assert [x.index for x in await ledger.ledger_leaves(3, 6)] == [3, 4, 5]


async def test_every_complete_node_is_stored(ledger: LedgerStore) -> None:
    records = [record(n) for n in range(21)]
    await append_in_batches(ledger, records, seed=1)
    _, expected = TreeState().extend([r.leaf_hash for r in records])
    keys = [(level, index) for level, index, _ in expected]
    assert await ledger.ledger_nodes(keys) == {(lvl, idx): h for lvl, idx, h in expected}
    for missing in [(0, 21), (1, 10), (4, 1), (5, 0)]:
        with pytest.raises(StorageError, match="no node"):
            await ledger.ledger_nodes([(0, 0), missing])


async def test_nodes_below_level_4_are_computed_not_stored(ledger: LedgerStore) -> None:
    records = [record(n) for n in range(70)]
    await append_in_batches(ledger, records, seed=2)
    rows = await raw_sql(ledger, "SELECT level, idx FROM ledger_nodes ORDER BY level, idx")
    assert [tuple(row) for row in rows] == [(4, 0), (4, 1), (4, 2), (4, 3), (5, 0), (5, 1), (6, 0)]
    _, expected = TreeState().extend([r.leaf_hash for r in records])
    low = {(lvl, idx): h for lvl, idx, h in expected if lvl < 4}
    assert await ledger.ledger_nodes(list(low)) == low  # from the leaf hashes under each


@pytest.mark.parametrize("seed", [7, 8])
async def test_proofs_from_stored_nodes_match_proofs_from_all_leaves(
    ledger: LedgerStore, seed: int
) -> None:
    total = 70
    records = [record(n) for n in range(total)]
    await append_in_batches(ledger, records, seed)
    hashes = [r.leaf_hash for r in records]

    def reference(start: int, end: int) -> bytes:
        return root_from_leaves(hashes[start:end])

    for size in range(1, total + 1):
        keys = sorted({k for s, e in _ranges(size) for k in perfect_subtrees(s, e)})
        stored = _subtrees(await ledger.ledger_nodes(keys))
        root = stored(0, size)
        assert root == reference(0, size)
        for index in range(size):
            proof = inclusion_proof(index, size, stored)
            assert proof == inclusion_proof(index, size, reference)
            assert verify_inclusion(hashes[index], index, size, proof, root)
        for old in range(size + 1):
            proof = consistency_proof(old, size, stored)
            assert proof == consistency_proof(old, size, reference)
            old_root = reference(0, old) if old else EMPTY_ROOT
            assert verify_consistency(old, size, proof, old_root, root)


def _subtrees(nodes: dict[tuple[int, int], bytes]) -> Callable[[int, int], bytes]:
    return lambda start, end: range_hash(start, end, lambda *key: nodes[key])


def _ranges(size: int) -> set[tuple[int, int]]:
    """Every range the proof algorithms ask for in a tree of `size` (and the root)."""
    asked: set[tuple[int, int]] = {(0, size)}

    def note(start: int, end: int) -> bytes:
        asked.add((start, end))
        return bytes(32)

    for index in range(size):
        inclusion_proof(index, size, note)
    for old in range(size + 1):
        consistency_proof(old, size, note)
    return asked


async def test_a_second_writer_on_the_same_database_extends_the_same_tree(
    store: Store, tmp_path: Path
) -> None:
    """Two store instances, each with its own cached frontier, appending in turn: each must
    notice the other's appends and reload its frontier."""
    schema = None
    if isinstance(store, PostgresStore):
        schema = (await store.execute_sql("SELECT current_schema()"))[0][0]
    backend = "sqlite" if isinstance(store, SqliteStore) else "postgres"
    other = ledger_of(await open_test_store(backend, tmp_path, schema))
    try:
        records = [record(n) for n in range(40)]
        writers = [ledger_of(store), other]
        rnd = random.Random(3)
        done = 0
        while done < len(records):
            batch = records[done : done + rnd.randint(1, 6)]
            assert await writers[rnd.randrange(2)].ledger_append(batch) == done
            done += len(batch)
        _, expected = TreeState().extend([r.leaf_hash for r in records])
        keys = [(lvl, idx) for lvl, idx, _ in expected]
        assert await other.ledger_nodes(keys) == {(lvl, idx): h for lvl, idx, h in expected}
    finally:
        assert isinstance(other, SqliteStore | PostgresStore)
        await other.close()


async def test_a_failed_append_leaves_nothing_behind(ledger: LedgerStore) -> None:
    await ledger.ledger_append([record(0), record(1), record(2)], [outbox_row("d-1", 1)])
    with pytest.raises(StorageError):  # delivery d-1 again: its outbox row is refused
        await ledger.ledger_append([record(3), record(4)], [outbox_row("d-1", 0)])
    with pytest.raises(ValueError, match="32 bytes"):
        await ledger.ledger_append([LeafRecord(**{**_fields(record(3)), "leaf_hash": b"x"})])
    naive = LeafRecord(**{**_fields(record(3)), "time": datetime(2026, 1, 1)})
    with pytest.raises(ValueError, match="naive"):
        await ledger.ledger_append([naive])
    assert await ledger.ledger_size() == 3
    assert len(await raw_sql(ledger, "SELECT 1 FROM ledger_chunks")) == 3
    assert [idx for _, idx in await subject_rows(ledger)] == [0, 1, 2]
    assert len(await raw_sql(ledger, "SELECT 1 FROM outbox")) == 1
    assert await ledger.ledger_append([record(3), record(4)]) == 3
    _, expected = TreeState().extend([record(n).leaf_hash for n in range(5)])
    assert await ledger.ledger_nodes([(2, 0), (0, 4)]) == {
        (lvl, idx): h for lvl, idx, h in expected if (lvl, idx) in {(2, 0), (0, 4)}
    }


def _fields(r: LeafRecord) -> dict[str, Any]:
    return {name: getattr(r, name) for name in LeafRecord._fields}


async def test_outbox_rows_are_written_with_the_entries_at_their_log_index(
    ledger: LedgerStore,
) -> None:
    await ledger.ledger_append([record(0), record(1)])
    rows = [outbox_row("d-a", 0, 2), outbox_row("d-b", 2)]
    assert await ledger.ledger_append([record(n) for n in range(2, 5)], rows) == 2
    stored = await raw_sql(
        ledger, "SELECT delivery_id, first_index, entry_count, state FROM outbox ORDER BY seq"
    )
    assert [tuple(row) for row in stored] == [("d-a", 2, 2, "pending"), ("d-b", 4, 1, "pending")]


async def test_a_transfer_appended_together_is_stored_in_chunks_of_at_most_256(
    ledger: LedgerStore,
) -> None:
    records = [run_record(n, run=600) for n in range(600)]
    await ledger.ledger_append(records[:1])
    await ledger.ledger_append(records[1:])  # a run is cut where an append ends, too
    chunks = await raw_sql(ledger, "SELECT first_idx, count, codec FROM ledger_chunks")
    assert sorted(tuple(row) for row in chunks) == [
        (0, 1, "zlib"),
        (1, 256, "zlib"),
        (257, 256, "zlib"),
        (513, 87, "zlib"),
    ]
    stored = await ledger.ledger_transfer("run-0")
    assert [(x.index, x.leaf, x.leaf_hash) for x in stored] == [
        (n, r.leaf, r.leaf_hash) for n, r in enumerate(records)
    ]
    leaves = await ledger.ledger_leaves(250, 520)  # across three chunks
    assert [(x.index, x.leaf) for x in leaves] == [(n, records[n].leaf) for n in range(250, 520)]
    size = await raw_sql(ledger, "SELECT sum(length(data)) FROM ledger_chunks")
    assert size[0][0] < sum(len(r.leaf) for r in records) / 4  # similar entries compress


async def test_content_that_does_not_decode_is_an_error(ledger: LedgerStore) -> None:
    await ledger.ledger_append([run_record(n) for n in range(5)])
    if isinstance(ledger, SqliteStore):
        await raw_sql(ledger, "DROP TRIGGER ledger_chunks_no_update")
    else:
        await raw_sql(ledger, "ALTER TABLE ledger_chunks DISABLE TRIGGER ledger_chunks_retained")
    await raw_sql(ledger, "UPDATE ledger_chunks SET data = substr(data, 1, 20)")
    with pytest.raises(StorageError, match="does not decode"):
        await ledger.ledger_leaves(0, 5)
    with pytest.raises(StorageError, match="does not decode"):
        await ledger.ledger_transfer("run-0")


# checkpoints


async def test_checkpoints_one_per_size(ledger: LedgerStore) -> None:
    def cp(size: int, note: str) -> StoredCheckpoint:
        return StoredCheckpoint(size, hashlib.sha256(note.encode()).digest(), note, T0)

    await ledger.ledger_add_checkpoint(cp(5, "five"))
    await ledger.ledger_add_checkpoint(cp(2, "two"))
    await ledger.ledger_add_checkpoint(cp(5, "five again"))  # ignored
    assert await ledger.ledger_checkpoints() == [cp(2, "two"), cp(5, "five")]
    assert await ledger.ledger_checkpoints(latest_only=True) == [cp(5, "five")]


# queries


@pytest.mark.parametrize(
    "flt",
    [
        TransferFilter(),
        TransferFilter(subject_id="s-3"),
        TransferFilter(partner_id=PARTNERS[1]),
        TransferFilter(purpose=PURPOSES[1], outcome="denied"),
        TransferFilter(legal_basis=BASES[1]),
        TransferFilter(since=T0 + timedelta(minutes=10), until=T0 + timedelta(minutes=31)),
        TransferFilter(subject_id="s-1", partner_id=PARTNERS[0], since=T0),
        TransferFilter(subject_id="nobody"),
        TransferFilter(legal_basis=""),
        TransferFilter(outcome="allowed", since=T0 + timedelta(minutes=25)),
        TransferFilter(subject_id="s-2", outcome="denied", until=T0 + timedelta(minutes=70)),
        TransferFilter(partner_id=PARTNERS[0], purpose=PURPOSES[0], legal_basis=BASES[0]),
        TransferFilter(subject_id="s-4", purpose=PURPOSES[1], since=T0 + timedelta(minutes=5)),
    ],
)
@pytest.mark.parametrize("layout", ["one entry a chunk", "transfers in chunks"])
async def test_find_filters_and_pages(
    ledger: LedgerStore, flt: TransferFilter, layout: str
) -> None:
    if layout == "one entry a chunk":
        records = [record(n) for n in range(45)]
        await append_in_batches(ledger, records, seed=5)
    else:  # chunks mix matching and other entries: pages must still fill up
        records = [run_record(n, run=30) for n in range(100)]
        await append_in_batches(ledger, records, seed=5, most=40)
    expected = [n for n, r in enumerate(records) if _matches(r, flt)]
    found: list[int] = []
    after = -1
    while page := await ledger.ledger_find(flt, after=after, limit=4):
        assert len(page) <= 4
        found.extend(x.index for x in page)
        for x in page:
            assert (x.leaf, x.leaf_hash) == (records[x.index].leaf, records[x.index].leaf_hash)
        after = page[-1].index
        if len(page) < 4:  # a short page is the last
            assert await ledger.ledger_find(flt, after=after, limit=4) == []
    assert found == expected
    whole = await ledger.ledger_find(flt, after=-1, limit=1000)
    assert [x.index for x in whole] == expected
    middle = records[len(records) // 2]
    later = await ledger.ledger_find(flt, after=records.index(middle), limit=1000)
    assert [x.index for x in later] == [n for n in expected if n > records.index(middle)]


def _matches(r: LeafRecord, flt: TransferFilter) -> bool:
    equal = ("subject_id", "partner_id", "purpose", "legal_basis", "outcome")
    if any(getattr(flt, f) is not None and getattr(flt, f) != getattr(r, f) for f in equal):
        return False
    return (flt.since is None or r.time >= flt.since) and (flt.until is None or r.time < flt.until)


async def test_a_transfer_is_its_entries_in_order(ledger: LedgerStore) -> None:
    await ledger.ledger_append([record(0, transfer="a"), record(1, transfer="b")])
    await ledger.ledger_append([record(2, transfer="a")])
    assert [x.index for x in await ledger.ledger_transfer("a")] == [0, 2]
    assert await ledger.ledger_transfer("none") == []
    assert await ledger.ledger_find(TransferFilter(), after=0, limit=0) == []


# append-only triggers and retention


REFUSED = [
    "UPDATE ledger_leaves SET leaf_hash = leaf_hash",
    "DELETE FROM ledger_leaves",
    "UPDATE ledger_nodes SET hash = hash",
    "DELETE FROM ledger_nodes",
    "UPDATE ledger_checkpoints SET note = note",
    "DELETE FROM ledger_checkpoints",
    "UPDATE ledger_chunks SET codec = codec",
    "UPDATE ledger_chunks SET retain_until = retain_until WHERE retain_until < '2021-01-01'",
    "DELETE FROM ledger_chunks WHERE retain_until > '2021-01-01'",
    "UPDATE ledger_subjects SET idx = idx",
    "DELETE FROM ledger_subjects",  # expired entries' rows too: their chunks are still there
    # SQLite's staged subject index rows
    "UPDATE ledger_subjects_recent SET idx = idx",
    "DELETE FROM ledger_subjects_recent",  # not merged yet, and their chunks are there
]


@pytest.mark.parametrize("sql", REFUSED)
async def test_history_cannot_be_rewritten(
    ledger: LedgerStore, sql: str, small_merges: int
) -> None:
    if "_recent" in sql and not isinstance(ledger, SqliteStore):
        pytest.skip("staged subject index rows are SQLite's")
    records = [record(n, retain=EXPIRED if n % 2 else KEPT) for n in range(18)]
    await ledger.ledger_append(records[:16])  # SQLite: merged
    await ledger.ledger_append(records[16:])  # SQLite: staged
    await ledger.ledger_add_checkpoint(StoredCheckpoint(18, bytes(32), "note", T0))
    before = await ledger.ledger_leaves(0, 18)
    with pytest.raises(StorageError, match=r"append-only|retention"):
        await raw_sql(ledger, sql)
    assert await ledger.ledger_leaves(0, 18) == before
    assert len(await ledger.ledger_nodes([(4, 0)])) == 1  # the one stored node
    assert len(await ledger.ledger_find(TransferFilter(subject_id="s-2"), after=-1, limit=9)) == 3


async def test_postgres_refuses_truncate(ledger: LedgerStore) -> None:
    if not isinstance(ledger, PostgresStore):
        pytest.skip("TRUNCATE is PostgreSQL's")
    tables = ("leaves", "chunks", "subjects", "nodes", "checkpoints")
    for table in (f"ledger_{name}" for name in tables):
        with pytest.raises(StorageError, match="append-only"):
            await raw_sql(ledger, f"TRUNCATE {table} CASCADE")


async def test_sqlite_insert_or_replace_cannot_overwrite(
    ledger: LedgerStore, small_merges: int
) -> None:
    if not isinstance(ledger, SqliteStore):
        pytest.skip("INSERT OR REPLACE is SQLite's")
    await ledger.ledger_append([record(n) for n in range(16)])
    await ledger.ledger_append([record(16), record(17)])
    with pytest.raises(StorageError, match="append-only"):
        await raw_sql(ledger, "INSERT OR REPLACE INTO ledger_leaves VALUES (0, zeroblob(32))")
    with pytest.raises(StorageError, match="retention"):
        await raw_sql(ledger, "REPLACE INTO ledger_chunks SELECT * FROM ledger_chunks")
    with pytest.raises(StorageError, match="retention"):
        await raw_sql(ledger, "REPLACE INTO ledger_subjects SELECT * FROM ledger_subjects")
    with pytest.raises(StorageError, match="retention"):
        await raw_sql(
            ledger, "REPLACE INTO ledger_subjects_recent SELECT * FROM ledger_subjects_recent"
        )


async def test_sqlite_subject_ids_with_a_nul_are_indexed_whole(ledger: LedgerStore) -> None:
    if not isinstance(ledger, SqliteStore):
        pytest.skip("PostgreSQL text cannot hold a NUL at all")
    odd = [LeafRecord(**{**_fields(record(n)), "subject_id": f"s\x00{n % 2}"}) for n in range(4)]
    await ledger.ledger_append(odd)
    assert [s for s, _ in await subject_rows(ledger)] == ["s\x000", "s\x001", "s\x000", "s\x001"]
    found = await ledger.ledger_find(TransferFilter(subject_id="s\x001"), after=-1, limit=9)
    assert [x.index for x in found] == [1, 3]


async def test_sqlite_stages_subject_rows_and_merges_them_in_key_order(
    ledger: LedgerStore, small_merges: int
) -> None:
    if not isinstance(ledger, SqliteStore):
        pytest.skip("staged subject index rows are SQLite's")
    records = [record(n, retain=EXPIRED if n % 4 == 0 else KEPT) for n in range(60)]
    await append_in_batches(ledger, records, seed=11)
    merged = [row[0] for row in await raw_sql(ledger, "SELECT idx FROM ledger_subjects")]
    staged = [row[0] for row in await raw_sql(ledger, "SELECT idx FROM ledger_subjects_recent")]
    assert len(merged) >= 48
    assert len(staged) >= 1  # the last append crossing 48 merged everything before it
    assert max(merged) < min(staged)
    assert await subject_rows(ledger) == [(r.subject_id, n) for n, r in enumerate(records)]
    flt = TransferFilter(subject_id="s-5")
    expected = [n for n, r in enumerate(records) if r.subject_id == "s-5"]
    assert [x.index for x in await ledger.ledger_find(flt, after=-1, limit=100)] == expected
    assert [x.index for x in await ledger.ledger_find(flt, after=40, limit=2)] == [
        n for n in expected if n > 40
    ][:2]
    assert await ledger.ledger_purge(TODAY) == 15
    assert await subject_rows(ledger) == [(r.subject_id, n) for n, r in enumerate(records) if n % 4]


async def test_purge_removes_only_expired_content(ledger: LedgerStore) -> None:
    records = [record(n, retain=EXPIRED if n % 3 == 0 else KEPT) for n in range(20)]
    await append_in_batches(ledger, records, seed=9)
    assert await ledger.ledger_purge(TODAY) == 7
    assert await ledger.ledger_purge(TODAY) == 0
    leaves = await ledger.ledger_leaves(0, 20)
    assert [x.leaf is None for x in leaves] == [n % 3 == 0 for n in range(20)]
    assert [x.leaf_hash for x in leaves] == [r.leaf_hash for r in records]
    found = await ledger.ledger_find(TransferFilter(), after=-1, limit=100)
    assert [x.index for x in found] == [n for n in range(20) if n % 3]
    _, expected = TreeState().extend([r.leaf_hash for r in records])
    keys = [(lvl, idx) for lvl, idx, _ in expected]
    assert await ledger.ledger_nodes(keys) == {(lvl, idx): h for lvl, idx, h in expected}


async def test_purge_goes_by_chunk_and_takes_the_subject_index_rows_along(
    ledger: LedgerStore,
) -> None:
    # Transfers of 10: 0-9 expired, 10-19 expired but one entry kept, 20-29 kept.
    retain = [EXPIRED] * 20 + [KEPT] * 10
    retain[15] = KEPT
    records = [run_record(n, retain=retain[n], run=10) for n in range(30)]
    await ledger.ledger_append(records)
    assert await ledger.ledger_purge(TODAY) == 10  # a chunk stays until its latest date
    leaves = await ledger.ledger_leaves(0, 30)
    assert [x.leaf is None for x in leaves] == [n < 10 for n in range(30)]
    assert [idx for _, idx in await subject_rows(ledger)] == list(range(10, 30))
    found = await ledger.ledger_find(TransferFilter(subject_id="s-3"), after=-1, limit=10)
    assert [x.index for x in found] == [n for n in range(10, 30) if n % 7 == 3]
    assert await ledger.ledger_transfer("run-0") == []


async def test_purge_with_a_clock_ahead_of_the_database_is_refused(ledger: LedgerStore) -> None:
    await ledger.ledger_append([record(0, retain=EXPIRED), record(1, retain=date(2998, 1, 1))])
    with pytest.raises(StorageError, match="retention"):
        await ledger.ledger_purge(KEPT)
    assert all(x.leaf is not None for x in await ledger.ledger_leaves(0, 2))  # all or nothing
