"""The SQLite store's log appends in a child process (gateway/storage/sqlite_writer.py): the
same log as on the thread, errors as on the thread, and a child that dies or is orphaned
loses nothing the caller was told was written.

The LedgerStore contract runs against this mode too (test_ledger_store.py, "sqlite-process").
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.errors import StorageError
from gateway.ledger.store import LeafRecord
from gateway.ledger.tree import TreeState
from gateway.storage.sqlite import SqliteStore
from gateway.storage.sqlite_writer import (
    CHECKPOINT_EVERY_S,
    CHILD_APPEND_MAX,
    LogWriter,
    checkpoint,
)
from tests.integration.test_ledger_multiwriter import writer_record

REPO = Path(__file__).resolve().parents[2]


def record(n: int) -> LeafRecord:
    return writer_record("w", n)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A SQLite store whose small appends go to a child process, as `gateway serve` runs."""
    opened = await SqliteStore.open(tmp_path / "gateway.sqlite3", log_writer="process")
    yield opened
    await opened.close()


def writer_of(store: SqliteStore) -> LogWriter:
    writer = store._log_writer  # the child is what these tests are about
    assert writer is not None
    return writer


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    return status != "Z"  # a zombie has exited; its parent has not reaped it yet


async def test_the_child_writes_the_log_the_thread_writes(tmp_path: Path) -> None:
    records = [record(n) for n in range(50)]
    stores = [
        await SqliteStore.open(tmp_path / "thread.sqlite3"),
        await SqliteStore.open(tmp_path / "process.sqlite3", log_writer="process"),
    ]
    try:
        for store in stores:
            firsts = [await store.ledger_append(records[i : i + 7]) for i in range(0, 50, 7)]
            assert firsts == list(range(0, 50, 7))
        dumps = []
        for store in stores:
            dumps.append(
                [
                    await store.execute_sql(f"SELECT * FROM {table} ORDER BY 1, 2")
                    for table in ("ledger_leaves", "ledger_nodes", "ledger_chunks")
                ]
            )
        assert dumps[0] == dumps[1]
        _, nodes = TreeState().extend([r.leaf_hash for r in records])
        keys = [(level, index) for level, index, _ in nodes]
        assert await stores[1].ledger_nodes(keys) == {(lv, i): h for lv, i, h in nodes}
        assert [x.leaf for x in await stores[1].ledger_leaves(0, 50)] == [r.leaf for r in records]
    finally:
        for store in stores:
            await store.close()


async def test_large_appends_stay_on_the_thread_and_both_extend_one_tree(
    store: SqliteStore,
) -> None:
    sizes = [CHILD_APPEND_MAX + 1, 3, CHILD_APPEND_MAX, CHILD_APPEND_MAX + 5, 1, 2]
    records = [record(n) for n in range(sum(sizes))]
    done = 0
    for size in sizes:
        assert await store.ledger_append(records[done : done + size]) == done
        done += size
        if done == sizes[0]:
            assert writer_of(store).pid is None  # a large append started no child
    assert writer_of(store).pid is not None
    _, nodes = TreeState().extend([r.leaf_hash for r in records])
    keys = [(level, index) for level, index, _ in nodes]
    assert await store.ledger_nodes(keys) == {(lv, i): h for lv, i, h in nodes}
    assert [x.leaf for x in await store.ledger_leaves(0, done)] == [r.leaf for r in records]


async def test_appends_run_in_another_process_which_exits_with_the_store(
    store: SqliteStore,
) -> None:
    assert await asyncio.gather(*(store.ledger_append([record(n)]) for n in range(8))) == list(
        range(8)
    )
    pid = writer_of(store).pid
    assert pid is not None
    assert pid != os.getpid()
    assert alive(pid)
    await store.close()
    assert not alive(pid)
    with pytest.raises(StorageError, match="closed"):
        await store.ledger_append([record(8)])


async def test_errors_are_the_threads_and_the_child_goes_on(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        await store.ledger_append([record(0)._replace(leaf_hash=b"x")])
    with pytest.raises(ValueError, match="naive"):
        await store.ledger_append([record(0)._replace(time=datetime(2026, 1, 1))])
    await store.execute_sql(
        "CREATE TRIGGER no_more BEFORE INSERT ON ledger_leaves "
        "BEGIN SELECT RAISE(ABORT, 'refused by test'); END"
    )
    with pytest.raises(StorageError, match="refused by test"):
        await store.ledger_append([record(0)])
    await store.execute_sql("DROP TRIGGER no_more")
    pid = writer_of(store).pid
    assert await store.ledger_append([record(0), record(1)]) == 0
    assert writer_of(store).pid == pid  # the same child throughout
    assert await store.ledger_size() == 2


async def test_a_failure_the_child_did_not_expect_is_one_json_log_event(
    store: SqliteStore, capfd: pytest.CaptureFixture[str]
) -> None:
    capfd.readouterr()
    # Not a record: the append raises TypeError, which no reply carries; the child exits.
    bad: Any = ["not a record"]
    with pytest.raises(StorageError, match="may or may not have been committed"):
        await writer_of(store).append(bad, ())
    assert await store.ledger_append([record(0)]) == 0  # another child takes over
    events = [json.loads(line) for line in capfd.readouterr().err.splitlines()]
    failed = [e for e in events if e["event"] == "log_writer_failed"]
    assert len(failed) == 1
    assert failed[0]["level"] == "error"
    assert "TypeError" in failed[0]["exception"] or "AttributeError" in failed[0]["exception"]


async def test_a_child_killed_mid_append_fails_it_and_the_next_append_starts_another(
    store: SqliteStore,
) -> None:
    assert await store.ledger_append([record(0)]) == 0
    first = writer_of(store).pid
    assert first is not None
    os.kill(first, signal.SIGSTOP)  # the append below waits in its socket
    under_way = asyncio.create_task(store.ledger_append([record(1)]))
    await asyncio.sleep(0.1)
    assert not under_way.done()
    os.kill(first, signal.SIGKILL)
    with pytest.raises(StorageError, match="may or may not have been committed"):
        await under_way
    assert await store.ledger_append([record(1), record(2)]) == 1  # it was not
    second = writer_of(store).pid
    assert second is not None
    assert second != first
    assert await store.ledger_size() == 3


def test_the_child_dies_with_the_service(tmp_path: Path) -> None:
    """The service killed with SIGKILL: the kernel kills its child too (an orphan could commit
    an append after a restarted service read the state it changes); what was answered stays."""
    script = textwrap.dedent(
        f"""
        import asyncio, hashlib, os, sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.integration.test_log_writer import record
        from gateway.storage.sqlite import SqliteStore

        async def main():
            store = await SqliteStore.open(
                __import__("pathlib").Path({str(tmp_path / "gateway.sqlite3")!r}),
                log_writer="process",
            )
            await store.ledger_append([record(0), record(1)])
            print(store._log_writer.pid, flush=True)
            await asyncio.sleep(60)

        asyncio.run(main())
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        os.kill(child, signal.SIGSTOP)  # it cannot see its socket close: only the kernel ends it
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while alive(child):
            assert time.monotonic() < deadline, "the writer outlived the service"
            time.sleep(0.02)
    finally:
        parent.kill()
        parent.wait(10)

    async def size() -> int:
        store = await SqliteStore.open(tmp_path / "gateway.sqlite3")
        try:
            return await store.ledger_size()
        finally:
            await store.close()

    assert asyncio.run(size()) == 2


def test_the_child_loads_no_model_driver_or_crypto_library() -> None:
    # What the child imports is what it holds in memory for the service's life (49 MB when it
    # loaded the whole storage package, about 25 MB without): it needs the SQLite ledger only.
    probe = (
        "import sys, gateway.storage.sqlite_writer\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(done.stdout.split())
    assert "gateway" in loaded
    assert not loaded & {"pydantic", "pydantic_core", "asyncpg", "cryptography", "aiohttp"}


async def test_the_childs_thread_checkpoints_the_wal_without_an_append_waiting(
    store: SqliteStore, tmp_path: Path
) -> None:
    # Small appends never fill the WAL to the 64 MiB at which a commit would copy it into the
    # database; the child's checkpointer copies it within CHECKPOINT_EVERY_S of going idle.
    database = tmp_path / "gateway.sqlite3"
    for n in range(0, 300, 3):
        await store.ledger_append([record(n), record(n + 1), record(n + 2)])
    before = database.stat().st_size
    async with asyncio.timeout(10 * CHECKPOINT_EVERY_S + 5):
        while True:  # until the leaves reach the database file
            if database.stat().st_size > before:
                break
            await asyncio.sleep(CHECKPOINT_EVERY_S / 5)
    assert await store.ledger_size() == 300


def test_a_wal_the_passive_copies_cannot_keep_small_is_restarted(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite3"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode = WAL")
    writer.execute("PRAGMA wal_autocheckpoint = 0")
    writer.execute("CREATE TABLE t (x BLOB)")
    for _ in range(20):
        writer.execute("INSERT INTO t VALUES (?)", (b"x" * 8000,))
    checkpointer = sqlite3.connect(path, isolation_level=None, timeout=1.0)
    assert checkpoint(checkpointer, max_frames=10_000) == "passive"  # small: copied, kept
    assert checkpoint(checkpointer, max_frames=5) == "restart"  # past the bound
    writer.execute("INSERT INTO t VALUES (?)", (b"x",))  # the WAL starts over
    frames = checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
    assert frames < 5
    assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 21
