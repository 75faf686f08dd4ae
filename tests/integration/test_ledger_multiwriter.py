"""Two OS processes append to one log at the same time and still build one consistent tree.

Each writer is this module run as a script (`python -m tests.integration.test_ledger_multiwriter
...`): it opens its own store on the shared database (PostgreSQL: the same fresh schema;
SQLite: the same file), says "ready", waits for "go" on stdin so that both start together, and
appends its entries in batches of 1-50. Afterwards the test recomputes the tree from every
stored leaf hash: no gaps, both writers' entries all there, every stored node and the root
as recomputed, and a checkpoint over the full size verifies.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from gateway.keyring import init_keyring
from gateway.ledger.checkpoint import open_note
from gateway.ledger.service import Ledger
from gateway.ledger.store import LeafRecord, LedgerStore
from gateway.ledger.tree import TreeState, leaf_hash, root_from_leaves
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore
from tests.conftest import BACKENDS, drop_schema, new_schema_name, pg_test_url

REPO = Path(__file__).resolve().parents[2]
PER_WRITER = 2_000
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ORIGIN = "gateway.test/transfer-log"


def writer_record(writer: str, n: int) -> LeafRecord:
    leaf = json.dumps({"n": n, "writer": writer}, separators=(",", ":")).encode()
    return LeafRecord(
        leaf=leaf,
        leaf_hash=leaf_hash(leaf),
        entry_id=f"{writer}-{n}",
        transfer_id=f"{writer}-{n // 100}",
        time=T0,
        subject_id=f"s-{n}",
        partner_id="google-customer-match",
        purpose="ad_customer_match",
        legal_basis="consent",
        outcome="allowed",
        retain_until=date(2999, 1, 1),
    )


async def open_store(backend: str, target: str, schema: str) -> SqliteStore | PostgresStore:
    if backend == "sqlite":
        return await SqliteStore.open(Path(target))
    return await PostgresStore.open(target, schema=schema)


async def write(backend: str, target: str, schema: str, writer: str, seed: int) -> None:
    """The child process: open, report ready, wait for go, append PER_WRITER entries."""
    store = await open_store(backend, target, schema)
    try:
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        rnd = random.Random(seed)
        done = 0
        while done < PER_WRITER:
            count = min(rnd.randint(1, 50), PER_WRITER - done)
            await store.ledger_append([writer_record(writer, n) for n in range(done, done + count)])
            done += count
            # A pause, as between a service's appends: back to back, one SQLite writer could
            # take the lock again and again while the other's busy handler slept, finish alone
            # and leave the test no interleaving to check.
            await asyncio.sleep(rnd.uniform(0, 0.003))
    finally:
        await store.close()


async def run_writers(backend: str, target: str, schema: str) -> None:
    writers = [
        await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "tests.integration.test_ledger_multiwriter"),
            *(backend, target, schema, name, str(seed)),
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for seed, name in enumerate(("a", "b"))
    ]
    for child in writers:
        assert child.stdout is not None
        assert await asyncio.wait_for(child.stdout.readline(), timeout=60) == b"ready\n"
    for child in writers:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        await child.stdin.drain()
    for child in writers:
        assert await asyncio.wait_for(child.wait(), timeout=300) == 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
async def test_two_processes_append_to_one_tree(backend: str, tmp_path: Path) -> None:
    schema = ""
    if backend == "postgres":
        target, schema = pg_test_url(), new_schema_name()
    else:
        target = str(tmp_path / "var" / "gateway.sqlite3")
    store = await open_store(backend, target, schema)  # migrated before the writers start
    try:
        await run_writers(backend, target, schema)
        await check_one_tree(store, tmp_path)
    finally:
        await store.close()
        if schema:
            await drop_schema(target, schema)


async def check_one_tree(store: LedgerStore, tmp_path: Path) -> None:
    size = await store.ledger_size()
    assert size == 2 * PER_WRITER
    leaves = await store.ledger_leaves(0, size)
    assert [x.index for x in leaves] == list(range(size))  # no gaps, no duplicates
    entries = [json.loads(x.leaf or b"") for x in leaves]
    for name in ("a", "b"):
        assert [e["n"] for e in entries if e["writer"] == name] == list(range(PER_WRITER))
    order = [e["writer"] for e in entries]
    assert sum(a != b for a, b in itertools.pairwise(order)) > 2  # they interleaved
    hashes = [x.leaf_hash for x in leaves]
    assert hashes == [leaf_hash(x.leaf or b"") for x in leaves]
    _, expected = TreeState().extend(hashes)
    stored = await store.ledger_nodes([(level, index) for level, index, _ in expected])
    assert stored == {(level, index): h for level, index, h in expected}
    keyring, _ = init_keyring(tmp_path / "keys", T0)
    ledger = Ledger(store=store, keyring=keyring, origin=ORIGIN, clock=lambda: T0)
    checkpoint = await ledger.checkpoint()
    opened = open_note(checkpoint.note, ledger.verifier_key(), origin=ORIGIN)
    assert (opened.size, opened.root) == (size, root_from_leaves(hashes))


if __name__ == "__main__":
    backend_arg, target_arg, schema_arg, name_arg, seed_arg = sys.argv[1:6]
    asyncio.run(write(backend_arg, target_arg, schema_arg, name_arg, int(seed_arg)))
