"""The embedded default store: stdlib sqlite3, writes on a dedicated thread.

Every write runs on a single-thread executor that owns the writing connection, so the event
loop never blocks on disk; with `log_writer="process"` (what `gateway serve` does) the log's
small appends run in a child process instead, off the event loop's GIL (sqlite_writer.py).
Reads that need no write lock run on read-only connections of their own (WAL gives each a
committed snapshot while a commit is under way, so a read never queues behind a commit's
fsync): scans (the log's leaves and transfers, consent history, a chunk's consent states) on a
second thread, and lookups by key (an API key's client, one person's consent state) on the
event loop itself, with a connection that never waits for a lock: an indexed lookup costs tens
of microseconds there, against about half a millisecond of a fraud check's budget to hand it to
a thread and back (docs/fraud-checks.md). `synchronous=FULL` makes a returned commit survive
power loss. Timestamps are integer microseconds since the Unix epoch, UTC (exact, sortable,
cheap to bind in bulk).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from gateway.delivery.outbox import SideWrite
from gateway.errors import StorageError
from gateway.ledger.store import LeafRecord, StoredCheckpoint, StoredLeaf
from gateway.ledger.transfer_filter import TransferFilter
from gateway.models import ClientRecord, ConsentEvent, Discontinuance, Role, SubjectState
from gateway.settings import LogWriterMode
from gateway.storage import ConsentRow
from gateway.storage import sqlite_consent as consent
from gateway.storage.delivery_store import SqliteDeliveryMixin
from gateway.storage.migrations import SchemaTooNew
from gateway.storage.sqlite_connect import connect, connect_reader, is_busy, transaction
from gateway.storage.sqlite_ledger import SqliteLedger
from gateway.storage.sqlite_time import from_micros, to_micros
from gateway.storage.sqlite_writer import CHILD_APPEND_MAX, LogWriter
from gateway.storage.summary_store import SqliteSummaryMixin

T = TypeVar("T")

# A consent read for this many people or fewer (a fraud check's one) is a lookup by key.
_LOOKUP_MAX_IDS = 8

# SQL is spelled out in full (no string building), so no statement can carry data.
_INSERT_CLIENT = """INSERT INTO clients
    (client_id, name, role, partners, key_sha256, created_at, revoked_at)
    VALUES (?, ?, ?, ?, ?, ?, ?)"""
_CLIENT = """SELECT client_id, name, role, partners, key_sha256, created_at, revoked_at
    FROM clients WHERE client_id = ?"""
_CLIENTS = """SELECT client_id, name, role, partners, key_sha256, created_at, revoked_at
    FROM clients ORDER BY created_at, client_id"""
_REVOKE = "UPDATE clients SET revoked_at = ? WHERE client_id = ? AND revoked_at IS NULL"


def _optional_instant(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


def _client(row: Sequence[Any]) -> ClientRecord:
    return ClientRecord(
        client_id=row[0],
        name=row[1],
        role=Role(row[2]),
        partners=tuple(json.loads(row[3])),
        key_sha256=row[4],
        created_at=from_micros(row[5]),
        revoked_at=_optional_instant(row[6]),
    )


class SqliteStore(SqliteDeliveryMixin, SqliteSummaryMixin):
    """The `Store` over one SQLite file. Build with `await SqliteStore.open(path)`."""

    def __init__(
        self,
        *,
        conn: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        reader: sqlite3.Connection,
        reader_executor: ThreadPoolExecutor,
        lookups: sqlite3.Connection,
        log_writer: LogWriter | None = None,
    ) -> None:
        self._conn = conn
        self._executor = executor
        self._reader = reader
        self._reader_executor = reader_executor
        self._lookups = lookups  # the event loop's: used on its thread only
        self._closed = False
        self._ledger = SqliteLedger()  # used on the worker thread only, like the connection
        self._log_writer = log_writer  # appends in a child process (sqlite_writer.py)

    @classmethod
    async def open(cls, path: Path, *, log_writer: LogWriterMode = "thread") -> SqliteStore:
        """Create the folder and file if absent, apply migrations. `log_writer`: where the
        transfer log's appends run, on the writing thread or in a child process (see
        sqlite_writer.py). Raises StorageError."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        reader_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-reader")
        opened: list[tuple[ThreadPoolExecutor, sqlite3.Connection]] = []
        try:
            conn = await _in_worker(executor, partial(connect, path))  # migrates: first
            opened.append((executor, conn))
            reader = await _in_worker(reader_executor, partial(connect_reader, path))
            opened.append((reader_executor, reader))
            lookups = _translated(partial(connect_reader, path, wait_s=0))
        except BaseException:
            for owner, opened_conn in reversed(opened):
                await _in_worker(owner, opened_conn.close)
            executor.shutdown(wait=False)
            reader_executor.shutdown(wait=False)
            raise
        return cls(
            conn=conn,
            executor=executor,
            reader=reader,
            reader_executor=reader_executor,
            lookups=lookups,
            log_writer=LogWriter(path) if log_writer == "process" else None,
        )

    async def _run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """`op` on the writing connection's thread."""
        if self._closed:
            raise StorageError("the SQLite store is closed")
        return await _in_worker(self._executor, partial(op, self._conn))

    async def _read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """`op` on the read-only connection's thread: it sees what was committed when it
        began, never waits for a commit under way, and cannot write."""
        if self._closed:
            raise StorageError("the SQLite store is closed")
        return await _in_worker(self._reader_executor, partial(op, self._reader))

    async def _lookup(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """`op`, a read by key, on the event loop's own read-only connection, at once; the
        rare one that would have to wait for a lock (busy timeout 0) goes to the reader thread,
        which waits. Raises StorageError."""
        if self._closed:
            raise StorageError("the SQLite store is closed")
        try:
            return op(self._lookups)
        except sqlite3.Error as exc:
            if not is_busy(exc):
                raise StorageError(f"SQLite: {exc}") from exc
        return await self._read(op)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._log_writer is not None:
                await self._log_writer.close()
            self._lookups.close()
            await _in_worker(self._reader_executor, self._reader.close)
        finally:
            try:
                await _in_worker(self._executor, self._conn.close)
            finally:
                self._executor.shutdown(wait=False)
                self._reader_executor.shutdown(wait=False)

    async def execute_sql(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Run one raw statement in its own transaction (tests, maintenance). Raises
        StorageError."""

        def op(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            with transaction(conn):
                return conn.execute(sql, params).fetchall()

        return await self._run(op)

    # consents

    async def append_consent_events(self, events: Sequence[ConsentEvent]) -> None:
        """Append in one transaction. Raises StorageError; ValueError for a naive datetime."""
        if not events:
            return
        params = [
            (
                e.subject_id,
                e.purpose,
                e.action.value,
                to_micros(e.effective_at),
                e.notice_version,
                e.channel,
                e.foreign_disclosure_version,
                to_micros(e.recorded_at),
                e.recorded_by,
            )
            for e in events
        ]

        def op(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.executemany(consent.EVENT, params)

        await self._run(op)

    async def append_consent_rows(
        self, rows: Sequence[ConsentRow], *, recorded_at: datetime, recorded_by: str
    ) -> None:
        """Append in one executemany transaction. Raises StorageError; ValueError for a naive
        datetime."""
        if rows:
            await self._run(
                partial(
                    consent.insert_rows,
                    rows=rows,
                    recorded_at=to_micros(recorded_at),
                    recorded_by=recorded_by,
                )
            )

    async def consent_history(self, subject_id: str) -> list[ConsentEvent]:
        """Every event of the subject by seq. Raises StorageError."""

        def op(conn: sqlite3.Connection) -> list[ConsentEvent]:
            return [consent.event(row) for row in conn.execute(consent.HISTORY, (subject_id,))]

        return await self._read(op)

    async def subject_states(self, subject_ids: Sequence[str]) -> dict[str, SubjectState]:
        """Current consents and discontinuances for each id, in two statements. Raises
        StorageError."""
        ids = list(dict.fromkeys(subject_ids))
        if not ids:
            return {}
        op = partial(consent.states, ids=ids)
        return await (self._lookup(op) if len(ids) <= _LOOKUP_MAX_IDS else self._read(op))

    async def stopped_among(
        self, subject_ids: Sequence[str], *, purpose: str, partner_id: str
    ) -> dict[str, str]:
        """See ConsentStore.stopped_among. Raises StorageError."""
        ids = list(dict.fromkeys(subject_ids))
        if not ids:
            return {}
        op = partial(consent.stopped, ids=ids, purpose=purpose, partner_id=partner_id)
        return await (self._lookup(op) if len(ids) <= _LOOKUP_MAX_IDS else self._read(op))

    async def append_discontinuance(self, item: Discontinuance) -> Discontinuance:
        """Raises StorageError; ValueError for a naive datetime."""
        params = (
            item.subject_id,
            None if item.partners is None else json.dumps(list(item.partners)),
            item.reason,
            to_micros(item.requested_at),
            item.recorded_by,
        )

        def op(conn: sqlite3.Connection) -> int:
            with transaction(conn):
                cursor = conn.execute(consent.DISCONTINUANCE, params)
                assert cursor.lastrowid is not None  # an INSERT into a rowid table sets it
                return cursor.lastrowid

        seq = await self._run(op)
        return item.model_copy(update={"seq": seq})

    # clients

    async def create_client(self, client: ClientRecord) -> None:
        """Raises StorageError when the id (or the key hash) exists."""
        params = (
            client.client_id,
            client.name,
            client.role.value,
            json.dumps(list(client.partners)),
            client.key_sha256,
            to_micros(client.created_at),
            None if client.revoked_at is None else to_micros(client.revoked_at),
        )

        def op(conn: sqlite3.Connection) -> None:
            with transaction(conn):
                conn.execute(_INSERT_CLIENT, params)

        await self._run(op)

    async def get_client(self, client_id: str) -> ClientRecord | None:
        """Raises StorageError."""

        def op(conn: sqlite3.Connection) -> ClientRecord | None:
            row = conn.execute(_CLIENT, (client_id,)).fetchone()
            return None if row is None else _client(row)

        return await self._lookup(op)

    async def list_clients(self) -> list[ClientRecord]:
        """Every client, oldest first. Raises StorageError."""

        def op(conn: sqlite3.Connection) -> list[ClientRecord]:
            return [_client(row) for row in conn.execute(_CLIENTS)]

        return await self._read(op)

    async def revoke_client(self, client_id: str, at: datetime) -> bool:
        """False when there is no such active client. Raises StorageError."""
        params = (to_micros(at), client_id)

        def op(conn: sqlite3.Connection) -> bool:
            with transaction(conn):
                cursor = conn.execute(_REVOKE, params)
                return cursor.rowcount == 1

        return await self._run(op)

    # transfer log: the LedgerStore of gateway/ledger/store.py (SQL in sqlite_ledger.py)

    async def ledger_append(
        self, records: Sequence[LeafRecord], outbox: Sequence[SideWrite] = ()
    ) -> int:
        """One BEGIN IMMEDIATE transaction (with the side writes), durable on return. Raises
        StorageError; ValueError for a leaf hash not 32 bytes or a naive time."""
        if self._log_writer is not None and len(records) <= CHILD_APPEND_MAX:
            return await self._log_writer.append(records, outbox)
        return await self._run(partial(self._ledger.append, records=records, outbox=outbox))

    async def ledger_size(self) -> int:
        return await self._read(self._ledger.size)

    async def ledger_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Raises StorageError, also when one is missing."""
        return await self._read(partial(self._ledger.nodes, keys=keys))

    async def ledger_leaves(self, start: int, end: int) -> list[StoredLeaf]:
        return await self._read(partial(self._ledger.leaves, start=start, end=end))

    async def ledger_add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        await self._run(partial(self._ledger.add_checkpoint, checkpoint=checkpoint))

    async def ledger_checkpoints(self, *, latest_only: bool = False) -> list[StoredCheckpoint]:
        return await self._read(partial(self._ledger.checkpoints, latest_only=latest_only))

    async def ledger_find(self, flt: TransferFilter, *, after: int, limit: int) -> list[StoredLeaf]:
        """Raises StorageError (also for content that does not decode)."""
        return await self._read(partial(self._ledger.find, flt=flt, after=after, limit=limit))

    async def ledger_transfer(self, transfer_id: str) -> list[StoredLeaf]:
        return await self._read(partial(self._ledger.transfer, transfer_id=transfer_id))

    async def ledger_purge(self, today: date) -> int:
        """Raises StorageError (also when the database's clock finds an entry unexpired)."""
        return await self._run(partial(self._ledger.purge, today=today))


def _translated(fn: Callable[[], T]) -> T:
    """`fn` on the calling thread, its sqlite3 errors as StorageError."""
    try:
        return fn()
    except sqlite3.Error as exc:
        raise StorageError(f"SQLite: {exc}") from exc


async def _in_worker(executor: ThreadPoolExecutor, fn: Callable[[], T]) -> T:
    """Run `fn` on the store's thread; the one place sqlite3 errors become StorageError."""
    try:
        return await asyncio.get_running_loop().run_in_executor(executor, fn)
    except (sqlite3.Error, SchemaTooNew) as exc:
        raise StorageError(f"SQLite: {exc}") from exc
    except OSError as exc:  # the folder or file cannot be created or opened
        raise StorageError(f"SQLite: {exc.strerror or exc}") from exc
