"""The transfer log on SQLite: the statements and logic behind SqliteStore's ledger methods.

Every method of `SqliteLedger` takes the store's connection and runs on the store's single
worker thread (SqliteStore translates sqlite3 errors into StorageError there), so the cached
tree state needs no lock. Appends take SQLite's write lock with BEGIN IMMEDIATE, so a second
process appending to the same file waits for it and then sees a larger size than its cache:
it reloads the frontier (one node read per set bit of the size) before extending the tree.

Column encodings: `time` is integer microseconds since the Unix epoch, UTC (as the rest of
the SQLite store); `retain_until` is an ISO 8601 date text, so that the DELETE trigger can
compare it with `date('now')` (UTC).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, Final

from gateway.errors import StorageError
from gateway.ledger.store import LeafRecord, StoredCheckpoint, StoredLeaf, TransferFilter
from gateway.ledger.tree import HASH_SIZE, TreeState
from gateway.storage.sqlite_time import from_micros, to_micros

# SQL is spelled out in full; `find` joins fixed fragments, never data (data is bound).
_SIZE: Final = "SELECT max(idx) FROM ledger_leaves"  # the rowid's b-tree: O(log n)
_LEAF_HASH: Final = "SELECT leaf_hash FROM ledger_leaves WHERE idx = ?"
_NODE_HASH: Final = "SELECT hash FROM ledger_nodes WHERE level = ? AND idx = ?"
_INSERT_LEAF: Final = "INSERT INTO ledger_leaves (idx, leaf_hash) VALUES (?, ?)"
_INSERT_ENTRY: Final = """INSERT INTO ledger_entries (idx, leaf, entry_id, transfer_id, time,
    subject_id, partner_id, purpose, legal_basis, outcome, retain_until)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
_INSERT_NODE: Final = "INSERT INTO ledger_nodes (level, idx, hash) VALUES (?, ?, ?)"
_LEAVES: Final = """SELECT l.idx, l.leaf_hash, e.leaf FROM ledger_leaves AS l
    LEFT JOIN ledger_entries AS e ON e.idx = l.idx
    WHERE l.idx >= ? AND l.idx < ? ORDER BY l.idx"""
_ADD_CHECKPOINT: Final = """INSERT INTO ledger_checkpoints (size, root, note, created_at)
    VALUES (?, ?, ?, ?) ON CONFLICT (size) DO NOTHING"""
_CHECKPOINTS: Final = "SELECT size, root, note, created_at FROM ledger_checkpoints ORDER BY size"
_LATEST_CHECKPOINT: Final = """SELECT size, root, note, created_at FROM ledger_checkpoints
    ORDER BY size DESC LIMIT 1"""
_FOUND: Final = """SELECT e.idx, l.leaf_hash, e.leaf
    FROM ledger_entries AS e JOIN ledger_leaves AS l ON l.idx = e.idx WHERE """
_TRANSFER: Final = _FOUND + "e.transfer_id = ? ORDER BY e.idx"
_PURGE: Final = "DELETE FROM ledger_entries WHERE retain_until < ?"
# TransferFilter field -> its condition, in a fixed order.
_CONDITIONS: Final = (
    ("subject_id", "e.subject_id = ?"),
    ("partner_id", "e.partner_id = ?"),
    ("purpose", "e.purpose = ?"),
    ("legal_basis", "e.legal_basis = ?"),
    ("outcome", "e.outcome = ?"),
    ("since", "e.time >= ?"),
    ("until", "e.time < ?"),
)


@contextmanager
def _immediate(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front: the size read inside is the size we append at.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _entry_row(index: int, r: LeafRecord) -> tuple[Any, ...]:
    return (
        index,
        r.leaf,
        r.entry_id,
        r.transfer_id,
        to_micros(r.time),
        r.subject_id,
        r.partner_id,
        r.purpose,
        r.legal_basis,
        r.outcome,
        r.retain_until.isoformat(),
    )


def _leaf(row: Sequence[Any]) -> StoredLeaf:
    return StoredLeaf(index=row[0], leaf_hash=row[1], leaf=row[2])


def _checkpoint(row: Sequence[Any]) -> StoredCheckpoint:
    return StoredCheckpoint(size=row[0], root=row[1], note=row[2], created_at=from_micros(row[3]))


def _size(conn: sqlite3.Connection) -> int:
    last = conn.execute(_SIZE).fetchone()[0]
    return 0 if last is None else int(last) + 1


def _node(conn: sqlite3.Connection, level: int, index: int) -> bytes:
    """Raises StorageError when the node is missing."""
    if level == 0:
        row = conn.execute(_LEAF_HASH, (index,)).fetchone()
    else:
        row = conn.execute(_NODE_HASH, (level, index)).fetchone()
    if row is None:
        raise StorageError(f"the transfer log has no node ({level}, {index}): tampered?")
    return bytes(row[0])


class SqliteLedger:
    """The ledger half of SqliteStore. Call its methods on the store's worker thread only."""

    def __init__(self) -> None:
        self._state = TreeState()  # a cache: valid whenever its size is the stored size

    def append(self, conn: sqlite3.Connection, records: Sequence[LeafRecord]) -> int:
        """One durable transaction (synchronous=FULL) appending `records` after the current
        end, with their entries and the new nodes of level >= 1. Returns the first index.
        Raises sqlite3.Error; ValueError for a bad leaf hash or a naive time."""
        hashes = [r.leaf_hash for r in records]
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("leaf hashes must be 32 bytes")
        with _immediate(conn):
            first = _size(conn)
            state = self._state
            if state.size != first:  # another process appended since: reload the frontier
                state = TreeState.from_nodes(first, lambda lvl, idx: _node(conn, lvl, idx))
            new_state, created = state.extend(hashes)
            conn.executemany(_INSERT_LEAF, zip(range(first, new_state.size), hashes, strict=True))
            conn.executemany(_INSERT_ENTRY, map(_entry_row, range(first, new_state.size), records))
            conn.executemany(_INSERT_NODE, created[len(hashes) :])  # level 0 is ledger_leaves
        self._state = new_state  # only after COMMIT: a failed append leaves the cache as it was
        return first

    def size(self, conn: sqlite3.Connection) -> int:
        return _size(conn)

    def nodes(
        self, conn: sqlite3.Connection, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """Raises StorageError when one is missing. Point reads on one snapshot."""
        with _deferred(conn):
            return {(lvl, idx): _node(conn, lvl, idx) for lvl, idx in keys}

    def leaves(self, conn: sqlite3.Connection, start: int, end: int) -> list[StoredLeaf]:
        return [_leaf(row) for row in conn.execute(_LEAVES, (start, end))]

    def add_checkpoint(self, conn: sqlite3.Connection, checkpoint: StoredCheckpoint) -> None:
        c = checkpoint
        with _immediate(conn):
            conn.execute(_ADD_CHECKPOINT, (c.size, c.root, c.note, to_micros(c.created_at)))

    def checkpoints(
        self, conn: sqlite3.Connection, *, latest_only: bool = False
    ) -> list[StoredCheckpoint]:
        sql = _LATEST_CHECKPOINT if latest_only else _CHECKPOINTS
        return [_checkpoint(row) for row in conn.execute(sql)]

    def find(
        self, conn: sqlite3.Connection, flt: TransferFilter, *, after: int, limit: int
    ) -> list[StoredLeaf]:
        conditions = ["e.idx > ?"]
        params: list[Any] = [after]
        for name, condition in _CONDITIONS:
            value = getattr(flt, name)
            if value is not None:
                conditions.append(condition)
                params.append(to_micros(value) if isinstance(value, datetime) else value)
        sql = _FOUND + " AND ".join(conditions) + " ORDER BY e.idx LIMIT ?"
        return [_leaf(row) for row in conn.execute(sql, (*params, limit))]

    def transfer(self, conn: sqlite3.Connection, transfer_id: str) -> list[StoredLeaf]:
        return [_leaf(row) for row in conn.execute(_TRANSFER, (transfer_id,))]

    def purge(self, conn: sqlite3.Connection, today: date) -> int:
        """Delete entries whose retain_until is before `today`; the trigger still refuses any
        that the database's own clock (UTC) finds unexpired. Raises sqlite3.Error."""
        with _immediate(conn):
            return conn.execute(_PURGE, (today.isoformat(),)).rowcount


@contextmanager
def _deferred(conn: sqlite3.Connection) -> Iterator[None]:
    """A read transaction: one snapshot for several statements."""
    conn.execute("BEGIN DEFERRED")
    try:
        yield
    finally:
        conn.execute("COMMIT")
