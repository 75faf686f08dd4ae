"""The transfer log on PostgreSQL: the statements and logic behind PostgresStore's ledger methods.

Several gateway processes may append to one database. Each append is one transaction that
first takes a transaction-scoped advisory lock (keyed on the schema), so appends serialise
and build one tree; the lock goes with COMMIT or ROLLBACK, also when a process dies. The size
is read by a statement *after* the lock: under READ COMMITTED every statement takes a fresh
snapshot, so it sees what the previous holder committed (a REPEATABLE READ transaction, or a
size read in the locking statement itself, could see an older snapshot).

Every process caches the tree's frontier; when the size it finds under the lock differs from
its cache, another process appended, and it reloads the frontier (one query, O(log n) rows).

Methods raise asyncpg errors; PostgresStore translates them into StorageError.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import date
from typing import Any, Final

import asyncpg

from gateway.errors import StorageError
from gateway.ledger.store import LeafRecord, StoredCheckpoint, StoredLeaf, TransferFilter
from gateway.ledger.tree import HASH_SIZE, TreeState, perfect_subtrees

# SQL is spelled out in full; `find` joins fixed fragments, never data (data is bound).
_LOCK: Final = (
    "SELECT pg_advisory_xact_lock(hashtextextended('gateway-ledger:' || current_schema(), 0))"
)
_SIZE: Final = "SELECT coalesce(max(idx) + 1, 0) FROM ledger_leaves"  # a backward PK scan
# Level 0 from ledger_leaves, levels >= 1 from ledger_nodes: one round trip for any set.
_NODES: Final = """SELECT n.level, n.idx, n.hash FROM ledger_nodes AS n
    JOIN unnest($1::smallint[], $2::bigint[]) AS k (level, idx)
        ON n.level = k.level AND n.idx = k.idx
    UNION ALL
    SELECT 0, l.idx, l.leaf_hash FROM ledger_leaves AS l WHERE l.idx = ANY($3::bigint[])"""
# COPY (binary) beat one INSERT ... SELECT FROM unnest(arrays) per table by ~20 % and
# executemany by ~2x on 1,000-entry appends (bench/ledger.py's machine), at half the client CPU.
_LEAF_COLUMNS: Final = ("idx", "leaf_hash")
_ENTRY_COLUMNS: Final = (
    "idx",
    "leaf",
    "entry_id",
    "transfer_id",
    "time",
    "subject_id",
    "partner_id",
    "purpose",
    "legal_basis",
    "outcome",
    "retain_until",
)
_NODE_COLUMNS: Final = ("level", "idx", "hash")
_LEAVES: Final = """SELECT l.idx, l.leaf_hash, e.leaf FROM ledger_leaves AS l
    LEFT JOIN ledger_entries AS e ON e.idx = l.idx
    WHERE l.idx >= $1 AND l.idx < $2 ORDER BY l.idx"""
_ADD_CHECKPOINT: Final = """INSERT INTO ledger_checkpoints (size, root, note, created_at)
    VALUES ($1, $2, $3, $4) ON CONFLICT (size) DO NOTHING"""
_CHECKPOINTS: Final = "SELECT size, root, note, created_at FROM ledger_checkpoints ORDER BY size"
_LATEST_CHECKPOINT: Final = """SELECT size, root, note, created_at FROM ledger_checkpoints
    ORDER BY size DESC LIMIT 1"""
_FOUND: Final = """SELECT e.idx, l.leaf_hash, e.leaf
    FROM ledger_entries AS e JOIN ledger_leaves AS l ON l.idx = e.idx WHERE """
_TRANSFER: Final = _FOUND + "e.transfer_id = $1 ORDER BY e.idx"
_PURGE: Final = "DELETE FROM ledger_entries WHERE retain_until < $1"
# TransferFilter field -> its condition (with the placeholder number filled in), fixed order.
_CONDITIONS: Final = (
    ("subject_id", "e.subject_id = ${}"),
    ("partner_id", "e.partner_id = ${}"),
    ("purpose", "e.purpose = ${}"),
    ("legal_basis", "e.legal_basis = ${}"),
    ("outcome", "e.outcome = ${}"),
    ("since", "e.time >= ${}"),
    ("until", "e.time < ${}"),
)


def _leaf(row: asyncpg.Record) -> StoredLeaf:
    return StoredLeaf(index=row[0], leaf_hash=row[1], leaf=row[2])


def _checkpoint(row: asyncpg.Record) -> StoredCheckpoint:
    return StoredCheckpoint(size=row[0], root=row[1], note=row[2], created_at=row[3])


def _entry_rows(first: int, records: Sequence[LeafRecord]) -> list[tuple[Any, ...]]:
    """Raises ValueError for a naive time (asyncpg would silently take it as UTC)."""
    rows = []
    for index, r in enumerate(records, first):
        if r.time.utcoffset() is None:
            raise ValueError("naive datetime: the store keeps timezone-aware instants")
        rows.append(
            (
                index,
                r.leaf,
                r.entry_id,
                r.transfer_id,
                r.time,
                r.subject_id,
                r.partner_id,
                r.purpose,
                r.legal_basis,
                r.outcome,
                r.retain_until,
            )
        )
    return rows


async def _nodes(
    conn: asyncpg.pool.PoolConnectionProxy[Any] | asyncpg.Pool[Any], keys: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """Raises StorageError when one is missing."""
    upper = [(lvl, idx) for lvl, idx in keys if lvl > 0]
    leaves = [idx for lvl, idx in keys if lvl == 0]
    rows = await conn.fetch(_NODES, [k[0] for k in upper], [k[1] for k in upper], leaves)
    found = {(row[0], row[1]): bytes(row[2]) for row in rows}
    if missing := [key for key in keys if key not in found]:
        raise StorageError(f"the transfer log has no node {missing[0]}: tampered?")
    return found


class PostgresLedger:
    """The ledger half of PostgresStore, over its pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._state = TreeState()  # a cache: valid whenever its size is the stored size
        # Appends of this process queue here rather than each holding a pooled connection
        # while it waits for the advisory lock.
        self._append_lock = asyncio.Lock()

    async def append(self, records: Sequence[LeafRecord]) -> int:
        """One transaction under the advisory lock: leaves, entries and the new nodes of
        level >= 1 after the current end. Returns the first index. Raises asyncpg errors,
        ValueError for a bad leaf hash or a naive time."""
        hashes = [r.leaf_hash for r in records]
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("leaf hashes must be 32 bytes")
        async with self._append_lock, self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_LOCK)
            first: int = await conn.fetchval(_SIZE)  # a new statement: a snapshot after the lock
            state = self._state
            if state.size != first:  # another process appended since: reload the frontier
                frontier = await _nodes(conn, perfect_subtrees(0, first))
                state = TreeState.from_nodes(first, lambda lvl, idx: frontier[lvl, idx])
            new_state, created = state.extend(hashes)
            leaves = list(zip(range(first, new_state.size), hashes, strict=True))
            await conn.copy_records_to_table("ledger_leaves", records=leaves, columns=_LEAF_COLUMNS)
            entries = _entry_rows(first, records)
            await conn.copy_records_to_table(
                "ledger_entries", records=entries, columns=_ENTRY_COLUMNS
            )
            nodes = created[len(hashes) :]  # level 0 is ledger_leaves
            if nodes:  # none when an odd size grows by one: save the round trip
                await conn.copy_records_to_table(
                    "ledger_nodes", records=nodes, columns=_NODE_COLUMNS
                )
        self._state = new_state  # only after COMMIT: a failed append leaves the cache as it was
        return first

    async def size(self) -> int:
        size: int = await self._pool.fetchval(_SIZE)
        return size

    async def nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Raises StorageError when one is missing."""
        return await _nodes(self._pool, keys)

    async def leaves(self, start: int, end: int) -> list[StoredLeaf]:
        return [_leaf(row) for row in await self._pool.fetch(_LEAVES, start, end)]

    async def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        c = checkpoint
        if c.created_at.utcoffset() is None:
            raise ValueError("naive datetime: the store keeps timezone-aware instants")
        await self._pool.execute(_ADD_CHECKPOINT, c.size, c.root, c.note, c.created_at)

    async def checkpoints(self, *, latest_only: bool = False) -> list[StoredCheckpoint]:
        sql = _LATEST_CHECKPOINT if latest_only else _CHECKPOINTS
        return [_checkpoint(row) for row in await self._pool.fetch(sql)]

    async def find(self, flt: TransferFilter, *, after: int, limit: int) -> list[StoredLeaf]:
        conditions = ["e.idx > $1"]
        params: list[Any] = [after]
        for name, condition in _CONDITIONS:
            value = getattr(flt, name)
            if value is not None:
                params.append(value)
                conditions.append(condition.format(len(params)))
        limit_at = len(params) + 1
        sql = _FOUND + " AND ".join(conditions) + f" ORDER BY e.idx LIMIT ${limit_at}"
        return [_leaf(row) for row in await self._pool.fetch(sql, *params, limit)]

    async def transfer(self, transfer_id: str) -> list[StoredLeaf]:
        return [_leaf(row) for row in await self._pool.fetch(_TRANSFER, transfer_id)]

    async def purge(self, today: date) -> int:
        """Delete entries whose retain_until is before `today`; the trigger still refuses any
        that the database's own clock (UTC) finds unexpired."""
        status: str = await self._pool.execute(_PURGE, today)
        return int(status.rpartition(" ")[2])
