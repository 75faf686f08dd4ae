"""The transfer log on PostgreSQL: the statements and logic behind PostgresStore's ledger methods.

Several gateway processes may append to one database. Each append is one transaction that
first takes a transaction-scoped advisory lock (keyed on the schema), so appends serialise
and build one tree; the lock goes with COMMIT or ROLLBACK, also when a process dies. The size
is read by a statement *after* the lock: under READ COMMITTED every statement takes a fresh
snapshot, so it sees what the previous holder committed (a REPEATABLE READ transaction, or a
size read in the locking statement itself, could see an older snapshot).

Every process caches the tree's frontier; when the size it finds under the lock differs from
its cache, another process appended, and it reloads the frontier (one query, O(log n) rows).

The layout (chunks, subject index, nodes from level 4) is gateway/storage/ledger_layout.py.
Methods raise asyncpg errors; PostgresStore translates them into StorageError.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from datetime import date
from typing import Any, Final, TypeAlias

import asyncpg

from gateway.delivery.outbox import SideWrite
from gateway.ledger.store import LeafRecord, StoredCheckpoint, StoredLeaf
from gateway.ledger.transfer_filter import TransferFilter
from gateway.ledger.tree import HASH_SIZE, TreeState, perfect_subtrees
from gateway.storage.ledger_layout import (
    CHUNK_MAX,
    NODE_MIN_LEVEL,
    SMALL_APPEND,
    ZLIB,
    EntryTest,
    assemble_nodes,
    chunks,
    decode,
    leaves_needed,
)
from gateway.storage.postgres_outbox import insert_outbox

Conn: TypeAlias = "asyncpg.pool.PoolConnectionProxy[Any] | asyncpg.Pool[Any]"

# SQL is spelled out in full; `find` joins fixed fragments, never data (data is bound).
_LOCK: Final = (
    "SELECT pg_advisory_xact_lock(hashtextextended('gateway-ledger:' || current_schema(), 0))"
)
_SIZE: Final = "SELECT coalesce(max(idx) + 1, 0) FROM ledger_leaves"  # a backward PK scan
# Stored nodes and the leaf hashes that the lower nodes are computed from: one round trip.
_NODES: Final = """SELECT n.level, n.idx, n.hash FROM ledger_nodes AS n
    JOIN unnest($1::smallint[], $2::bigint[]) AS k (level, idx)
        ON n.level = k.level AND n.idx = k.idx
    UNION ALL
    SELECT 0, l.idx, l.leaf_hash FROM ledger_leaves AS l WHERE l.idx = ANY($3::bigint[])"""
# COPY (binary) beat one INSERT ... SELECT FROM unnest(arrays) per table by ~20 % and
# executemany by ~2x on 1,000-entry appends (bench/ledger.py's machine), at half the client CPU.
_LEAF_COLUMNS: Final = ("idx", "leaf_hash")
_CHUNK_COLUMNS: Final = (
    "first_idx",
    "count",
    "transfer_id",
    "partner_id",
    "purpose",
    "time_min",
    "time_max",
    "retain_until",
    "codec",
    "data",
)
_SUBJECT_COLUMNS: Final = ("subject_id", "idx")
# An append of fewer than SMALL_APPEND records (a fraud check's provision, its verdict) writes
# its rows in one statement: four COPYs cost some ten round trips, each a wake-up of the
# server and of us.
_INSERT_SMALL: Final = """WITH
    leaves AS (INSERT INTO ledger_leaves (idx, leaf_hash)
        SELECT * FROM unnest($1::bigint[], $2::bytea[])),
    subjects AS (INSERT INTO ledger_subjects (subject_id, idx)
        SELECT * FROM unnest($3::text[], $1::bigint[])),
    nodes AS (INSERT INTO ledger_nodes (level, idx, hash)
        SELECT * FROM unnest($4::smallint[], $5::bigint[], $6::bytea[]))
    INSERT INTO ledger_chunks (first_idx, count, transfer_id, partner_id, purpose, time_min,
        time_max, retain_until, codec, data)
    SELECT * FROM unnest($7::bigint[], $8::integer[], $9::text[], $10::text[], $11::text[],
        $12::timestamptz[], $13::timestamptz[], $14::date[], $15::text[], $16::bytea[])"""
_NODE_COLUMNS: Final = ("level", "idx", "hash")
_LEAF_RANGE: Final = """SELECT idx, leaf_hash FROM ledger_leaves
    WHERE idx >= $1 AND idx < $2 ORDER BY idx"""
# The chunks holding any of [start, end): a chunk holds at most CHUNK_MAX records, so the
# one holding `start` begins after start - CHUNK_MAX (a bounded primary-key range).
_CHUNKS_OVER: Final = """SELECT first_idx, count, codec, data FROM ledger_chunks
    WHERE first_idx > $1 AND first_idx < $2 AND first_idx + count > $3 ORDER BY first_idx"""
_ADD_CHECKPOINT: Final = """INSERT INTO ledger_checkpoints (size, root, note, created_at)
    VALUES ($1, $2, $3, $4) ON CONFLICT (size) DO NOTHING"""
_CHECKPOINTS: Final = "SELECT size, root, note, created_at FROM ledger_checkpoints ORDER BY size"
_LATEST_CHECKPOINT: Final = """SELECT size, root, note, created_at FROM ledger_checkpoints
    ORDER BY size DESC LIMIT 1"""
_TRANSFER_CHUNKS: Final = """SELECT first_idx, count, codec, data FROM ledger_chunks
    WHERE transfer_id = $1 ORDER BY first_idx"""
_TRANSFER_HASHES: Final = """SELECT l.idx, l.leaf_hash FROM ledger_chunks AS c
    JOIN ledger_leaves AS l ON l.idx >= c.first_idx AND l.idx < c.first_idx + c.count
    WHERE c.transfer_id = $1"""
_HASHES: Final = "SELECT idx, leaf_hash FROM ledger_leaves WHERE idx = ANY($1::bigint[])"
# find: a person's entries through ledger_subjects, each with the chunk holding it; or the
# chunks after a cursor. Either is then narrowed by the chunk conditions below (their
# placeholders follow $1 and $2), with the LIMIT last.
_BY_SUBJECT: Final = """SELECT s.idx, c.first_idx, c.count, c.codec, c.data, c.time_min,
        c.time_max, l.leaf_hash
    FROM ledger_subjects AS s
    CROSS JOIN LATERAL (SELECT * FROM ledger_chunks AS h WHERE h.first_idx <= s.idx
        ORDER BY h.first_idx DESC LIMIT 1) AS c
    JOIN ledger_leaves AS l ON l.idx = s.idx
    WHERE s.subject_id = $1 AND s.idx > $2 AND c.first_idx + c.count > s.idx"""
_BY_CHUNK: Final = """SELECT c.first_idx, c.count, c.codec, c.data, c.time_min, c.time_max
    FROM ledger_chunks AS c WHERE c.first_idx > $1 AND c.first_idx + c.count > $2"""
_CHUNK_CONDITIONS: Final = (
    ("partner_id", " AND c.partner_id = ${}"),
    ("purpose", " AND c.purpose = ${}"),
    ("since", " AND c.time_max >= ${}"),
    ("until", " AND c.time_min < ${}"),
)
_FIND_BATCH_MAX: Final = 1024  # rows a query while a page fills
_PURGE_CHUNKS: Final = """DELETE FROM ledger_chunks WHERE retain_until < $1
    RETURNING first_idx, count, codec, data"""
_PURGE_SUBJECTS: Final = """DELETE FROM ledger_subjects AS s
    USING unnest($1::text[], $2::bigint[]) AS k (subject_id, idx)
    WHERE s.subject_id = k.subject_id AND s.idx = k.idx"""
_PURGE_SUBJECT_RANGE: Final = "DELETE FROM ledger_subjects WHERE idx >= $1 AND idx < $2"


def _checkpoint(row: asyncpg.Record) -> StoredCheckpoint:
    return StoredCheckpoint(size=row[0], root=row[1], note=row[2], created_at=row[3])


def _by_index(rows: Sequence[asyncpg.Record]) -> dict[int, bytes]:
    return {row[0]: row[1] for row in rows}


def _chunk_rows(records: Sequence[LeafRecord]) -> list[tuple[Any, ...]]:
    """ledger_chunks rows, first_idx counted from the append's first record. Raises
    ValueError for a naive time."""
    return [
        (
            c.offset,
            c.count,
            c.transfer_id,
            c.partner_id,
            c.purpose,
            c.time_min,
            c.time_max,
            c.retain_until,
            ZLIB,
            c.data,
        )
        for c in chunks(records)
    ]


async def _insert_small(
    conn: Conn,
    first: int,
    hashes: Sequence[bytes],
    subjects: Sequence[str],
    created: Sequence[tuple[int, int, bytes]],
    rows: Sequence[tuple[Any, ...]],
) -> None:
    """Leaves, subject index rows, nodes and chunks of a small append: one statement."""
    indexes = list(range(first, first + len(hashes)))
    chunks = list(zip(*[(first + row[0], *row[1:]) for row in rows], strict=True))
    levels, nodes, node_hashes = zip(*created, strict=True) if created else ((), (), ())
    await conn.execute(
        _INSERT_SMALL, indexes, hashes, subjects, levels, nodes, node_hashes, *chunks
    )


async def _copy_large(
    conn: Conn,
    first: int,
    hashes: Sequence[bytes],
    subjects: Sequence[str],
    created: Sequence[tuple[int, int, bytes]],
    encoding: asyncio.Future[list[tuple[Any, ...]]],
) -> None:
    """The same rows by COPY: a large append's bulk, table by table."""
    indexes = range(first, first + len(hashes))
    await conn.copy_records_to_table(
        "ledger_leaves", records=zip(indexes, hashes, strict=True), columns=_LEAF_COLUMNS
    )
    await conn.copy_records_to_table(
        "ledger_subjects", records=zip(subjects, indexes, strict=True), columns=_SUBJECT_COLUMNS
    )
    if created:  # most appends complete no node of level >= 4: save the round trip
        await conn.copy_records_to_table("ledger_nodes", records=created, columns=_NODE_COLUMNS)
    rows = await encoding  # raises what encoding raised (ValueError: a naive time)
    await conn.copy_records_to_table(
        "ledger_chunks",
        records=[(first + row[0], *row[1:]) for row in rows],
        columns=_CHUNK_COLUMNS,
    )


async def _nodes(conn: Conn, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """Raises StorageError when one is missing."""
    upper = [(lvl, idx) for lvl, idx in keys if lvl >= NODE_MIN_LEVEL]
    leaves = sorted(leaves_needed(keys))
    rows = await conn.fetch(_NODES, [k[0] for k in upper], [k[1] for k in upper], leaves)
    stored = {(row[0], row[1]): row[2] for row in rows if row[0]}
    hashes = {row[1]: row[2] for row in rows if not row[0]}
    return assemble_nodes(keys, stored, hashes)


def _chunk_conditions(flt: TransferFilter) -> tuple[str, list[Any]]:
    sql, params = "", []
    for name, condition in _CHUNK_CONDITIONS:
        value = getattr(flt, name)
        if value is not None:
            params.append(value)
            sql += condition.format(2 + len(params))
    return sql, params


class PostgresLedger:
    """The ledger half of PostgresStore, over its pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._state = TreeState()  # a cache: valid whenever its size is the stored size
        # Appends of this process queue here rather than each holding a pooled connection
        # while it waits for the advisory lock.
        self._append_lock = asyncio.Lock()

    async def append(self, records: Sequence[LeafRecord], outbox: Sequence[SideWrite] = ()) -> int:
        """One transaction under the advisory lock: leaf hashes, content chunks, subject index
        rows, the new nodes of level >= NODE_MIN_LEVEL and the side writes, after the current
        end. Returns the first index. Raises asyncpg errors, ValueError for a bad leaf hash or
        a naive time."""
        hashes = [r.leaf_hash for r in records]
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("leaf hashes must be 32 bytes")
        # A small append's chunk is encoded here (raises ValueError for a naive time); zlib
        # releases the GIL, so a large append's are encoded on a thread while this task waits
        # for the lock and sends the rest.
        rows = _chunk_rows(records) if len(records) < SMALL_APPEND else None
        encoding = None
        if rows is None:
            encoding = asyncio.ensure_future(asyncio.to_thread(_chunk_rows, records))
        subjects = [r.subject_id for r in records]
        try:
            async with self._append_lock, self._pool.acquire() as conn, conn.transaction():
                await conn.execute(_LOCK)
                first: int = await conn.fetchval(_SIZE)  # a statement after the lock: see above
                state = self._state
                if state.size != first:  # another process appended since: reload the frontier
                    frontier = await _nodes(conn, perfect_subtrees(0, first))
                    state = TreeState.from_nodes(first, lambda lvl, idx: frontier[lvl, idx])
                new_state, created = state.extend(hashes, keep_from=NODE_MIN_LEVEL)
                if encoding is None:
                    assert rows is not None
                    await _insert_small(conn, first, hashes, subjects, created, rows)
                else:
                    await _copy_large(conn, first, hashes, subjects, created, encoding)
                if outbox:
                    await insert_outbox(conn, outbox, first)
        finally:
            if encoding is not None and not encoding.done():
                encoding.cancel()  # the thread finishes on its own; nobody waits for it
            elif encoding is not None and not encoding.cancelled():
                encoding.exception()  # retrieved: no "never retrieved" warning
        self._state = new_state  # only after COMMIT: a failed append leaves the cache as it was
        return first

    async def size(self) -> int:
        size: int = await self._pool.fetchval(_SIZE)
        return size

    async def nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Raises StorageError when one is missing."""
        return await _nodes(self._pool, keys)

    async def leaves(self, start: int, end: int) -> list[StoredLeaf]:
        """Raises StorageError for a chunk that does not decode."""
        async with self._pool.acquire() as conn:
            hashes = await conn.fetch(_LEAF_RANGE, start, end)
            over = await conn.fetch(_CHUNKS_OVER, start - CHUNK_MAX, end, start)
        content: dict[int, bytes] = {}
        for first, count, codec, data in over:
            content.update(enumerate(decode(first, count, codec, data), first))
        return [StoredLeaf(index=i, leaf_hash=h, leaf=content.get(i)) for i, h in hashes]

    async def add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        c = checkpoint
        if c.created_at.utcoffset() is None:
            raise ValueError("naive datetime: the store keeps timezone-aware instants")
        await self._pool.execute(_ADD_CHECKPOINT, c.size, c.root, c.note, c.created_at)

    async def checkpoints(self, *, latest_only: bool = False) -> list[StoredCheckpoint]:
        sql = _LATEST_CHECKPOINT if latest_only else _CHECKPOINTS
        return [_checkpoint(row) for row in await self._pool.fetch(sql)]

    async def find(self, flt: TransferFilter, *, after: int, limit: int) -> list[StoredLeaf]:
        """Raises StorageError for a chunk that does not decode."""
        if limit < 1:
            return []
        conditions, params = _chunk_conditions(flt)
        limit_at = 3 + len(params)
        async with self._pool.acquire() as conn:
            if flt.subject_id is not None:
                sql = _BY_SUBJECT + conditions + f" ORDER BY s.idx LIMIT ${limit_at}"
                return await _find_by_subject(conn, sql, flt, after, limit, params)
            sql = _BY_CHUNK + conditions + f" ORDER BY c.first_idx LIMIT ${limit_at}"
            return await _find_by_chunk(conn, sql, flt, after, limit, params)

    async def transfer(self, transfer_id: str) -> list[StoredLeaf]:
        """Raises StorageError for a chunk that does not decode."""
        async with self._pool.acquire() as conn:
            hashes = _by_index(await conn.fetch(_TRANSFER_HASHES, transfer_id))
            rows = await conn.fetch(_TRANSFER_CHUNKS, transfer_id)
        found = []
        for first, count, codec, data in rows:
            for index, leaf in enumerate(decode(first, count, codec, data), first):
                if index in hashes:  # a missing leaf hash (tampered) is left out, as a gap
                    found.append(StoredLeaf(index=index, leaf_hash=hashes[index], leaf=leaf))
        return found

    async def purge(self, today: date) -> int:
        """Delete the chunks whose retain_until is before `today`, then their subject index
        rows, in one transaction; the triggers still refuse any chunk that the database's own
        clock (UTC) finds unexpired (all or nothing). Returns how many entries' content went.
        Raises StorageError for a chunk that does not decode."""
        async with self._pool.acquire() as conn, conn.transaction():
            expired = await conn.fetch(_PURGE_CHUNKS, today)
            for first, count, codec, data in expired:
                ids, indexes = _subject_keys(first, decode(first, count, codec, data))
                status: str = await conn.execute(_PURGE_SUBJECTS, ids, indexes)
                if int(status.rpartition(" ")[2]) != count:  # a leaf that names no subject
                    await conn.execute(_PURGE_SUBJECT_RANGE, first, first + count)  # a scan
        return sum(row[1] for row in expired)


def _subject_keys(first: int, leaves: Sequence[bytes]) -> tuple[list[str], list[int]]:
    """The subject_id and idx of each entry: the key its ledger_subjects row was inserted
    under (LeafRecord.subject_id is the entry's subject.id)."""
    ids, indexes = [], []
    for index, leaf in enumerate(leaves, first):
        try:
            subject = json.loads(leaf)["subject"]["id"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(subject, str):
            ids.append(subject)
            indexes.append(index)
    return ids, indexes


async def _find_by_subject(
    conn: Conn, sql: str, flt: TransferFilter, after: int, limit: int, params: list[Any]
) -> list[StoredLeaf]:
    """Pages of the person's index rows until `limit` entries match or none are left."""
    test = EntryTest(flt)
    found: list[StoredLeaf] = []
    decoded: dict[int, list[bytes]] = {}
    batch, last = min(limit, _FIND_BATCH_MAX), after
    while True:
        rows = await conn.fetch(sql, flt.subject_id, last, *params, batch)
        for index, first, count, codec, data, time_min, time_max, leaf_hash in rows:
            leaves = decoded.get(first)
            if leaves is None:
                leaves = decoded[first] = decode(first, count, codec, data)
            leaf = leaves[index - first]
            if test.decided(time_min, time_max) or test(leaf):
                found.append(StoredLeaf(index=index, leaf_hash=leaf_hash, leaf=leaf))
                if len(found) == limit:
                    return found
        if len(rows) < batch:
            return found
        last, batch = rows[-1][0], min(batch * 2, _FIND_BATCH_MAX)


async def _find_by_chunk(
    conn: Conn, sql: str, flt: TransferFilter, after: int, limit: int, params: list[Any]
) -> list[StoredLeaf]:
    """Pages of chunks after the cursor until `limit` entries match or none are left."""
    test = EntryTest(flt)
    picked: list[tuple[int, bytes]] = []
    batch, floor = 16, after - CHUNK_MAX
    while len(picked) < limit:
        rows = await conn.fetch(sql, floor, after + 1, *params, batch)
        for first, count, codec, data, time_min, time_max in rows:
            whole = test.decided(time_min, time_max)
            start = max(0, after + 1 - first)
            for index, leaf in enumerate(decode(first, count, codec, data)[start:], first + start):
                if whole or test(leaf):
                    picked.append((index, leaf))
                    if len(picked) == limit:
                        break
            if len(picked) == limit:
                break
        if len(rows) < batch:
            break
        floor, batch = rows[-1][0], min(batch * 2, _FIND_BATCH_MAX)
    if not picked:
        return []
    hashes = _by_index(await conn.fetch(_HASHES, [index for index, _ in picked]))
    return [
        StoredLeaf(index=index, leaf_hash=hashes[index], leaf=leaf)
        for index, leaf in picked
        if index in hashes
    ]
