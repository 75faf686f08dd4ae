"""The transfer log on SQLite: the statements and logic behind SqliteStore's ledger methods.

Every method of `SqliteLedger` takes the store's connection and runs on the store's single
worker thread (SqliteStore translates sqlite3 errors into StorageError there), so the cached
tree state needs no lock. Appends take SQLite's write lock with BEGIN IMMEDIATE, so a second
process appending to the same file waits for it and then sees a larger size than its cache:
it reloads the frontier (one node read per set bit of the size) before extending the tree.

The layout (chunks, subject index, nodes from level 4) is gateway/storage/ledger_layout.py.
Column encodings: `time_min`/`time_max` are integer microseconds since the Unix epoch, UTC
(as the rest of the SQLite store); `retain_until` is an ISO 8601 date text, so that the
DELETE trigger can compare it with `date('now')` (UTC).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Final

from gateway.delivery.outbox import SideWrite
from gateway.ledger.store import LeafRecord, StoredCheckpoint, StoredLeaf
from gateway.ledger.tree import HASH_SIZE, TreeState, perfect_subtrees
from gateway.storage.ledger_layout import (
    CHUNK_MAX,
    NODE_MIN_LEVEL,
    SMALL_APPEND,
    ZLIB,
    EntryTest,
    assemble_nodes,
    chunk,
    decode,
    leaf_span,
    runs,
)
from gateway.storage.sqlite_connect import transaction
from gateway.storage.sqlite_outbox import insert_outbox
from gateway.storage.sqlite_time import from_micros, to_micros

if TYPE_CHECKING:  # a pydantic model: the log writer process loads none
    from gateway.ledger.transfer_filter import TransferFilter

# SQL is spelled out in full; `find` joins fixed fragments, never data (data is bound).
_SIZE: Final = "SELECT max(idx) FROM ledger_leaves"  # the rowid's b-tree: O(log n)
_LEAF_RANGE: Final = "SELECT idx, leaf_hash FROM ledger_leaves WHERE idx >= ? AND idx < ?"
_NODE_HASH: Final = "SELECT hash FROM ledger_nodes WHERE level = ? AND idx = ?"
# Leaf hashes go in as one concatenated blob and staged subject ids as one JSON array: SQLite
# loops in C, at half the cost of executemany's binding a row at a time.
_INSERT_LEAF: Final = "INSERT INTO ledger_leaves (idx, leaf_hash) VALUES (?, ?)"
_INSERT_LEAVES: Final = """WITH RECURSIVE i (n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM i
        WHERE n + 1 < ?3)
    INSERT INTO ledger_leaves (idx, leaf_hash) SELECT ?1 + n, substr(?2, n * 32 + 1, 32) FROM i"""
_INSERT_CHUNK: Final = """INSERT INTO ledger_chunks (first_idx, count, transfer_id, partner_id,
    purpose, time_min, time_max, retain_until, codec, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""
# Subject index rows are staged in append order and merged in key order every _MERGE_EVERY
# entries (migration 6, gateway/storage/ledger_schema_v6.py): random inserts into
# ledger_subjects wrote a 4 KiB WAL page per entry; a merge writes each touched page once.
_MERGE_EVERY: Final = 16_384
_STAGE_SUBJECTS: Final = """INSERT INTO ledger_subjects_recent (idx, subject_id)
    SELECT ?1 + key, value FROM json_each(?2)"""
_STAGE_SUBJECT: Final = "INSERT INTO ledger_subjects_recent (idx, subject_id) VALUES (?, ?)"
_MERGE_SUBJECTS: Final = """INSERT INTO ledger_subjects (subject_id, idx)
    SELECT subject_id, idx FROM ledger_subjects_recent ORDER BY subject_id, idx"""
_CLEAR_STAGED: Final = "DELETE FROM ledger_subjects_recent"
# New nodes as a JSON array of [level, index] and their hashes as one concatenated blob.
_INSERT_NODES: Final = """INSERT INTO ledger_nodes (level, idx, hash)
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), substr(?2, key * 32 + 1, 32)
    FROM json_each(?1)"""
# The chunks holding any of [start, end): a chunk holds at most CHUNK_MAX records, so the
# one holding `start` begins after start - CHUNK_MAX (a bounded primary-key range).
_CHUNKS_OVER: Final = """SELECT first_idx, count, codec, data FROM ledger_chunks
    WHERE first_idx > ? AND first_idx < ? AND first_idx + count > ? ORDER BY first_idx"""
_ADD_CHECKPOINT: Final = """INSERT INTO ledger_checkpoints (size, root, note, created_at)
    VALUES (?, ?, ?, ?) ON CONFLICT (size) DO NOTHING"""
_CHECKPOINTS: Final = "SELECT size, root, note, created_at FROM ledger_checkpoints ORDER BY size"
_LATEST_CHECKPOINT: Final = """SELECT size, root, note, created_at FROM ledger_checkpoints
    ORDER BY size DESC LIMIT 1"""
_TRANSFER_CHUNKS: Final = """SELECT first_idx, count, codec, data FROM ledger_chunks
    WHERE transfer_id = ? ORDER BY first_idx"""
_TRANSFER_HASHES: Final = """SELECT l.idx, l.leaf_hash FROM ledger_chunks AS c
    JOIN ledger_leaves AS l ON l.idx >= c.first_idx AND l.idx < c.first_idx + c.count
    WHERE c.transfer_id = ?"""
_HASHES: Final = """SELECT idx, leaf_hash FROM ledger_leaves
    WHERE idx IN (SELECT value FROM json_each(?))"""
# find: a person's entries through the subject index (merged rows, then staged ones: every
# merged idx is below every staged one), each with the chunk holding it; or the chunks after a
# cursor. Either is then narrowed by the chunk conditions below.
_BY_SUBJECT: Final = """SELECT s.idx, c.first_idx, c.count, c.codec, c.data, c.time_min,
        c.time_max, l.leaf_hash
    FROM {} AS s
    JOIN ledger_chunks AS c ON c.first_idx = (SELECT first_idx FROM ledger_chunks
        WHERE first_idx <= s.idx ORDER BY first_idx DESC LIMIT 1)
    JOIN ledger_leaves AS l ON l.idx = s.idx
    WHERE s.subject_id = ? AND s.idx > ? AND c.first_idx + c.count > s.idx"""
_SUBJECT_TABLES: Final = ("ledger_subjects", "ledger_subjects_recent")  # a staged scan: < 16,384
_BY_CHUNK: Final = """SELECT c.first_idx, c.count, c.codec, c.data, c.time_min, c.time_max
    FROM ledger_chunks AS c WHERE c.first_idx > ? AND c.first_idx + c.count > ?"""
# TransferFilter field -> its condition on the chunk, in a fixed order.
_CHUNK_CONDITIONS: Final = (
    ("partner_id", " AND c.partner_id = ?"),
    ("purpose", " AND c.purpose = ?"),
    ("since", " AND c.time_max >= ?"),
    ("until", " AND c.time_min < ?"),
)
_EXPIRED: Final = "SELECT first_idx, count, codec, data FROM ledger_chunks WHERE retain_until < ?"
_PURGE_CHUNKS: Final = "DELETE FROM ledger_chunks WHERE retain_until < ?"
_PURGE_STAGED: Final = "DELETE FROM ledger_subjects_recent WHERE idx >= ? AND idx < ?"
_PURGE_SUBJECT: Final = "DELETE FROM ledger_subjects WHERE subject_id = ? AND idx = ?"
_PURGE_SUBJECT_RANGE: Final = "DELETE FROM ledger_subjects WHERE idx >= ? AND idx < ?"


def _deferred(conn: sqlite3.Connection) -> AbstractContextManager[None]:
    """A read transaction: one snapshot for several statements."""
    return transaction(conn, "DEFERRED")


def _checkpoint(row: Sequence[Any]) -> StoredCheckpoint:
    return StoredCheckpoint(size=row[0], root=row[1], note=row[2], created_at=from_micros(row[3]))


def _size(conn: sqlite3.Connection) -> int:
    last = conn.execute(_SIZE).fetchone()[0]
    return 0 if last is None else int(last) + 1


def _nodes(
    conn: sqlite3.Connection, keys: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], bytes]:
    """Raises StorageError when one is missing. Stored nodes by point reads; a lower node by
    one range read of the (at most 2^(NODE_MIN_LEVEL - 1)) leaf hashes under it."""
    stored: dict[tuple[int, int], bytes] = {}
    leaves: dict[int, bytes] = {}
    for level, index in keys:
        if level >= NODE_MIN_LEVEL:
            row = conn.execute(_NODE_HASH, (level, index)).fetchone()
            if row is not None:
                stored[level, index] = row[0]
        else:
            span = leaf_span(level, index)
            leaves.update(conn.execute(_LEAF_RANGE, (span.start, span.stop)).fetchall())
    return assemble_nodes(keys, stored, leaves)


# One thread per process helps encode chunks (started on first use, idle between appends);
# an append of fewer than SMALL_APPEND records is encoded by the store's thread alone.
_ENCODER: Final = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger-encode")


class _Encoding:
    """The chunks of one append, encoded from the first by the encoder thread while the store's
    thread inserts everything else, then from the last by the store's thread too (zlib runs
    without the GIL: the two share the work instead of one waiting for the other)."""

    def __init__(self, records: Sequence[LeafRecord]) -> None:
        self._records = records
        self._spans = runs(records)
        self._rows: list[tuple[Any, ...] | None] = [None] * len(self._spans)
        self._lock = threading.Lock()
        self._front, self._back = 0, len(self._spans)
        self._error: BaseException | None = None
        self._helped = threading.Event()
        if len(records) >= SMALL_APPEND:
            _ENCODER.submit(self._help)
        else:
            self._helped.set()

    def _take(self, *, front: bool) -> int | None:
        with self._lock:
            if self._front >= self._back:
                return None
            if front:
                self._front += 1
                return self._front - 1
            self._back -= 1
            return self._back

    def _encode(self, i: int) -> None:
        c = chunk(self._records, *self._spans[i])
        micros = to_micros(c.time_min), to_micros(c.time_max)
        row = (c.offset, c.count, c.transfer_id, c.partner_id, c.purpose, *micros)
        self._rows[i] = (*row, c.retain_until.isoformat(), ZLIB, c.data)

    def _help(self) -> None:
        try:
            while (i := self._take(front=True)) is not None:
                self._encode(i)
        except BaseException as exc:  # the store's thread raises it in rows()
            self._error = exc
        finally:
            self._helped.set()

    def rows(self) -> list[tuple[Any, ...]]:
        """ledger_chunks rows, first_idx counted from the append's first record. Raises
        ValueError for a naive time."""
        try:
            while (i := self._take(front=False)) is not None:
                self._encode(i)
        except BaseException:
            with self._lock:
                self._back = self._front  # the helper stops after its current chunk
            raise
        self._helped.wait()
        if self._error is not None:
            raise self._error
        return [row for row in self._rows if row is not None]


def _chunk_conditions(flt: TransferFilter) -> tuple[str, list[Any]]:
    sql, params = "", []
    for name, condition in _CHUNK_CONDITIONS:
        value = getattr(flt, name)
        if value is not None:
            sql += condition
            params.append(to_micros(value) if isinstance(value, datetime) else value)
    return sql, params


class SqliteLedger:
    """The ledger half of SqliteStore. Call its methods on the store's worker thread only."""

    def __init__(self) -> None:
        self._state = TreeState()  # a cache: valid whenever its size is the stored size

    def append(
        self,
        conn: sqlite3.Connection,
        records: Sequence[LeafRecord],
        outbox: Sequence[SideWrite] = (),
    ) -> int:
        """One durable transaction (synchronous=FULL) appending `records` after the current
        end: leaf hashes, content chunks, subject index rows, the new nodes of level >=
        NODE_MIN_LEVEL and the side writes. Returns the first index. Raises sqlite3.Error;
        ValueError for a bad leaf hash or a naive time."""
        hashes = [r.leaf_hash for r in records]
        if any(len(h) != HASH_SIZE for h in hashes):
            raise ValueError("leaf hashes must be 32 bytes")
        encoding = _Encoding(records)
        subjects = [r.subject_id for r in records]
        subjects_json = json.dumps(subjects)
        # SQLite's write lock is held from BEGIN to COMMIT, and every other writer (the log
        # writer process's fraud checks) waits for it: what a large append can work out
        # without the lock, it does first. The tree is extended at the size read now; should
        # another process append before BEGIN, it is extended again inside.
        large = len(records) >= SMALL_APPEND
        guess = self._extended(conn, _size(conn), hashes) if large else None
        rows = encoding.rows()  # raises what encoding raised (ValueError: a naive time)
        # IMMEDIATE takes the write lock up front: the size read inside is the size we append at.
        with transaction(conn):
            first = _size(conn)
            if guess is not None and guess[0].size == first:
                _, new_state, created = guess
            else:
                _, new_state, created = self._extended(conn, first, hashes)
            indexes = range(first, new_state.size)
            if "\\u0000" in subjects_json:  # json_each would cut an id at its NUL
                conn.executemany(_INSERT_LEAF, zip(indexes, hashes, strict=True))
                conn.executemany(_STAGE_SUBJECT, zip(indexes, subjects, strict=True))
            elif hashes:
                conn.execute(_INSERT_LEAVES, (first, b"".join(hashes), len(hashes)))
                conn.execute(_STAGE_SUBJECTS, (first, subjects_json))
            if created:  # one statement: a row at a time hands the GIL over per row
                where = json.dumps([(level, index) for level, index, _ in created])
                conn.execute(_INSERT_NODES, (where, b"".join(h for *_, h in created)))
            conn.executemany(_INSERT_CHUNK, [(first + row[0], *row[1:]) for row in rows])
            if outbox:
                insert_outbox(conn, outbox, first)
            if new_state.size // _MERGE_EVERY > first // _MERGE_EVERY:
                conn.execute(_MERGE_SUBJECTS)
                conn.execute(_CLEAR_STAGED)
        self._state = new_state  # only after COMMIT: a failed append leaves the cache as it was
        return first

    def _extended(
        self, conn: sqlite3.Connection, size: int, hashes: Sequence[bytes]
    ) -> tuple[TreeState, TreeState, list[tuple[int, int, bytes]]]:
        """The tree of `size` stored leaves (the cache, or its frontier read when another
        process appended), then extended by `hashes`, and the new nodes to store."""
        state = self._state
        if state.size != size:  # another process appended since: reload the frontier
            frontier = _nodes(conn, perfect_subtrees(0, size))
            state = TreeState.from_nodes(size, lambda lvl, idx: frontier[lvl, idx])
        new_state, created = state.extend(hashes, keep_from=NODE_MIN_LEVEL)
        return state, new_state, created

    def size(self, conn: sqlite3.Connection) -> int:
        return _size(conn)

    def nodes(
        self, conn: sqlite3.Connection, keys: Sequence[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """Raises StorageError when one is missing. Reads on one snapshot."""
        with _deferred(conn):
            return _nodes(conn, keys)

    def leaves(self, conn: sqlite3.Connection, start: int, end: int) -> list[StoredLeaf]:
        """Raises StorageError for a chunk that does not decode."""
        content: dict[int, bytes] = {}
        with _deferred(conn):
            hashes = conn.execute(_LEAF_RANGE + " ORDER BY idx", (start, end)).fetchall()
            for first, count, codec, data in conn.execute(
                _CHUNKS_OVER, (start - CHUNK_MAX, end, start)
            ):
                content.update(enumerate(decode(first, count, codec, data), first))
        return [StoredLeaf(index=i, leaf_hash=h, leaf=content.get(i)) for i, h in hashes]

    def add_checkpoint(self, conn: sqlite3.Connection, checkpoint: StoredCheckpoint) -> None:
        c = checkpoint
        with transaction(conn):
            conn.execute(_ADD_CHECKPOINT, (c.size, c.root, c.note, to_micros(c.created_at)))

    def checkpoints(
        self, conn: sqlite3.Connection, *, latest_only: bool = False
    ) -> list[StoredCheckpoint]:
        sql = _LATEST_CHECKPOINT if latest_only else _CHECKPOINTS
        return [_checkpoint(row) for row in conn.execute(sql)]

    def find(
        self, conn: sqlite3.Connection, flt: TransferFilter, *, after: int, limit: int
    ) -> list[StoredLeaf]:
        """Raises StorageError for a chunk that does not decode."""
        if limit < 1:
            return []
        conditions, params = _chunk_conditions(flt)
        with _deferred(conn):
            if flt.subject_id is not None:
                return _find_by_subject(conn, flt, after, limit, conditions, params)
            return _find_by_chunk(conn, flt, after, limit, conditions, params)

    def transfer(self, conn: sqlite3.Connection, transfer_id: str) -> list[StoredLeaf]:
        """Raises StorageError for a chunk that does not decode."""
        with _deferred(conn):
            hashes = dict(conn.execute(_TRANSFER_HASHES, (transfer_id,)).fetchall())
            found = []
            for first, count, codec, data in conn.execute(_TRANSFER_CHUNKS, (transfer_id,)):
                for index, leaf in enumerate(decode(first, count, codec, data), first):
                    if index in hashes:  # a missing leaf hash (tampered) is left out, as a gap
                        found.append(StoredLeaf(index=index, leaf_hash=hashes[index], leaf=leaf))
        return found

    def purge(self, conn: sqlite3.Connection, today: date) -> int:
        """Delete the chunks whose retain_until is before `today`, then their subject index
        rows; the triggers still refuse any chunk that the database's own clock (UTC) finds
        unexpired (all or nothing). Returns how many entries' content went. Raises
        sqlite3.Error; StorageError for a chunk that does not decode."""
        day = today.isoformat()
        with transaction(conn):
            expired = conn.execute(_EXPIRED, (day,)).fetchall()
            if not expired:
                return 0
            conn.execute(_PURGE_CHUNKS, (day,))
            for first, count, codec, data in expired:
                before = conn.total_changes
                conn.execute(_PURGE_STAGED, (first, first + count))
                if conn.total_changes - before == count:
                    continue  # none was merged yet
                conn.executemany(
                    _PURGE_SUBJECT, _subject_keys(first, decode(first, count, codec, data))
                )
                if conn.total_changes - before != count:  # a leaf that names no subject
                    conn.execute(_PURGE_SUBJECT_RANGE, (first, first + count))  # a full scan
        return sum(row[1] for row in expired)


def _subject_keys(first: int, leaves: Sequence[bytes]) -> list[tuple[str, int]]:
    """(subject_id, idx) of each entry: the key its ledger_subjects row was inserted under
    (LeafRecord.subject_id is the entry's subject.id)."""
    keys = []
    for index, leaf in enumerate(leaves, first):
        try:
            subject = json.loads(leaf)["subject"]["id"]
        except (ValueError, KeyError, TypeError):
            continue
        if isinstance(subject, str):
            keys.append((subject, index))
    return keys


def _find_by_subject(
    conn: sqlite3.Connection,
    flt: TransferFilter,
    after: int,
    limit: int,
    conditions: str,
    params: list[Any],
) -> list[StoredLeaf]:
    test = EntryTest(flt)
    found: list[StoredLeaf] = []
    decoded: dict[int, list[bytes]] = {}
    for table in _SUBJECT_TABLES:
        # Rows come in index order and are stepped only as far as needed.
        sql = _BY_SUBJECT.format(table) + conditions + " ORDER BY s.idx"
        cursor = conn.execute(sql, (flt.subject_id, after, *params))
        try:
            for index, first, count, codec, data, time_min, time_max, leaf_hash in cursor:
                leaves = decoded.get(first)
                if leaves is None:
                    leaves = decoded[first] = decode(first, count, codec, data)
                leaf = leaves[index - first]
                if test.decided(from_micros(time_min), from_micros(time_max)) or test(leaf):
                    found.append(StoredLeaf(index=index, leaf_hash=leaf_hash, leaf=leaf))
                    if len(found) == limit:
                        return found
        finally:
            cursor.close()
    return found


def _find_by_chunk(
    conn: sqlite3.Connection,
    flt: TransferFilter,
    after: int,
    limit: int,
    conditions: str,
    params: list[Any],
) -> list[StoredLeaf]:
    test = EntryTest(flt)
    picked: list[tuple[int, bytes]] = []
    sql = _BY_CHUNK + conditions + " ORDER BY c.first_idx"
    cursor = conn.execute(sql, (after - CHUNK_MAX, after + 1, *params))
    try:
        for first, count, codec, data, time_min, time_max in cursor:
            whole = test.decided(from_micros(time_min), from_micros(time_max))
            start = max(0, after + 1 - first)
            for index, leaf in enumerate(decode(first, count, codec, data)[start:], first + start):
                if whole or test(leaf):
                    picked.append((index, leaf))
                    if len(picked) == limit:
                        break
            if len(picked) == limit:
                break
    finally:
        cursor.close()
    if not picked:
        return []
    ids = json.dumps([index for index, _ in picked])
    hashes = dict(conn.execute(_HASHES, (ids,)).fetchall())
    return [
        StoredLeaf(index=index, leaf_hash=hashes[index], leaf=leaf)
        for index, leaf in picked
        if index in hashes
    ]
