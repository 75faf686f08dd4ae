"""A large SQLite append extends the tree before it takes the write lock (so that the log
writer process's fraud checks wait less for it), at the size it read then. When another
process appends in between, the append must extend the tree again, at the size it finds
inside its transaction: these tests put that other append exactly there."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from gateway.ledger.store import LeafRecord
from gateway.ledger.tree import root_from_leaves
from gateway.storage import sqlite_ledger
from gateway.storage.sqlite import SqliteStore
from gateway.storage.sqlite_connect import connect
from gateway.storage.sqlite_ledger import SqliteLedger
from tests.integration.test_ledger_multiwriter import writer_record


@pytest.fixture
async def path(tmp_path: Path) -> Path:
    target = tmp_path / "var" / "gateway.sqlite3"
    store = await SqliteStore.open(target)  # creates and migrates the file
    await store.close()
    return target


@pytest.fixture
def conns(path: Path) -> Iterator[tuple[sqlite3.Connection, sqlite3.Connection]]:
    mine, other = connect(path), connect(path)
    yield mine, other
    mine.close()
    other.close()


def records(writer: str, count: int) -> list[LeafRecord]:
    return [writer_record(writer, n) for n in range(count)]


def stored_hashes(conn: sqlite3.Connection) -> list[bytes]:
    return [row[0] for row in conn.execute("SELECT leaf_hash FROM ledger_leaves ORDER BY idx")]


@pytest.mark.parametrize("count", [64, 1_000])  # 64: the smallest append that guesses
def test_another_writer_between_the_guess_and_the_lock(
    conns: tuple[sqlite3.Connection, sqlite3.Connection],
    monkeypatch: pytest.MonkeyPatch,
    count: int,
) -> None:
    mine, other = conns
    ledger, rival = SqliteLedger(), SqliteLedger()
    assert ledger.append(mine, records("a", 5)) == 0  # its cache: a tree of 5
    rows = sqlite_ledger._Encoding.rows
    cut_in: list[int] = []

    def rows_then_a_rival_append(self: sqlite_ledger._Encoding) -> list[tuple[object, ...]]:
        if not cut_in:  # after the guess, before BEGIN (the rival's own append comes here too)
            cut_in.append(-1)
            cut_in[0] = rival.append(other, records("b", 3))
        return rows(self)

    monkeypatch.setattr(sqlite_ledger._Encoding, "rows", rows_then_a_rival_append)
    first = ledger.append(mine, records("c", count))
    assert cut_in == [5]
    assert first == 8  # after the rival's three, not at the guessed 5
    expected = [r.leaf_hash for r in records("a", 5) + records("b", 3) + records("c", count)]
    assert stored_hashes(mine) == expected
    # every stored node and the cached tree are those of the leaves as stored
    total = 8 + count
    assert ledger.append(mine, records("d", 1)) == total
    everything = [*expected, records("d", 1)[0].leaf_hash]
    fresh = SqliteLedger()
    assert fresh.append(other, records("e", 1)) == total + 1  # loads the frontier from nodes
    everything.append(records("e", 1)[0].leaf_hash)
    for size in (total, total + 2):  # the stored frontier (nodes and leaves) at each size
        stored = SqliteLedger()._extended(mine, size, [])[0]
        assert stored.root() == root_from_leaves(everything[:size])


def test_a_guess_nobody_overtook_is_used(
    conns: tuple[sqlite3.Connection, sqlite3.Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, _ = conns
    ledger = SqliteLedger()
    calls: list[int] = []
    extended = SqliteLedger._extended

    def counted(
        self: SqliteLedger, conn: sqlite3.Connection, size: int, hashes: Sequence[bytes]
    ) -> Any:
        calls.append(size)
        return extended(self, conn, size, hashes)

    monkeypatch.setattr(SqliteLedger, "_extended", counted)
    assert ledger.append(mine, records("a", 100)) == 0
    assert ledger.append(mine, records("b", 100)) == 100
    assert calls == [0, 100]  # once each, before the lock
