"""How the SQLite store opens its connections and takes its transactions.

Three connections share one WAL file: the writing connection (its own thread), a read-only one
for scans (its own thread) and a read-only one the event loop uses itself for lookups by key,
which never waits for a lock (`connect_reader(..., wait_s=0)`): in WAL mode a read sees the
last commit without waiting for a writer, and the rare read that would have to wait (another
process resetting the WAL) is raised as busy for the store to hand to the reader thread.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Final

from gateway.file_modes import make_private
from gateway.storage.migrations import SQLITE_MIGRATIONS, apply_sqlite

__all__ = ["BUSY_TIMEOUT_S", "connect", "connect_reader", "is_busy", "transaction"]

BUSY_TIMEOUT_S = 30.0
WAL_CHECKPOINT_PAGES: Final = 16384  # 64 MiB of 4 KiB pages: when SQLite checkpoints
_CACHE_KIB = 64 * 1024


@contextmanager
def transaction(conn: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[None]:
    # IMMEDIATE takes the write lock up front: no deadlock-prone upgrade from a read lock.
    conn.execute(f"BEGIN {mode}")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


_PRIVATE_HINT: Final = "make the database files mode 0600, owned by the service's user"


def create_private(path: Path) -> None:
    """Create the database file, and its folder, readable by this user only (0600 in 0700):
    they hold consents and the transfer log. SQLite gives the -wal and -shm files the main
    file's mode. An existing folder is left as it is; an existing database file (and its
    -wal and -shm) open to others, as older gateways made it, is made private
    (`make_private`: a warning when it cannot be). Raises OSError."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the mode: only if created
    # O_EXCL: never touch an existing file's content; an empty one is a new database to
    # SQLite, so a concurrent creator loses nothing.
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        make_private(file, event="database_not_private", hint=_PRIVATE_HINT)


def connect(path: Path) -> sqlite3.Connection:
    """The store's connection (also the benchmark floor's): open, creating folder and file
    (`create_private`), set the pragmas, migrate. Call it on the thread that will use it.
    Raises sqlite3.Error, OSError, SchemaTooNew."""
    create_private(path)
    # isolation_level=None: no implicit transactions, `transaction` says where they are.
    conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise sqlite3.OperationalError(f"cannot switch {path} to WAL (got {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        # INSERT OR REPLACE deletes the conflicting row; only with recursive triggers does that
        # deletion fire the append-only DELETE triggers.
        conn.execute("PRAGMA recursive_triggers = ON")
        # A bulk import touches a page per row of the (subject, purpose, ...) index; checkpointing
        # every 64 MiB of WAL instead of SQLite's 4 MiB copies a page touched by several batches
        # once, not once per batch (a third less commit time), and the size limit trims the file.
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_CHECKPOINT_PAGES}")
        # The same index wants to stay in memory: with SQLite's default 2 MiB cache every insert
        # re-reads its leaf page from the OS (a 1M-line import took 1.6x as long).
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_CHECKPOINT_PAGES * 4096}")
        apply_sqlite(conn, SQLITE_MIGRATIONS)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_reader(path: Path, *, wait_s: float = BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A read-only connection to a file `connect` has opened (and migrated), waiting at most
    `wait_s` for a lock. Call it on the thread that will use it. Raises sqlite3.Error."""
    conn = sqlite3.connect(path, timeout=wait_s, isolation_level=None)
    try:
        conn.execute("PRAGMA query_only = ON")
        conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
    except BaseException:
        conn.close()
        raise
    return conn


def is_busy(exc: sqlite3.Error) -> bool:
    """The statement would have had to wait for another connection's lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
