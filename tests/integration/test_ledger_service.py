"""The Ledger service over real stores: group commit, checkpoints, proofs, stop and purge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.delivery.outbox import OutboxRow, SideWrite
from gateway.errors import StorageError
from gateway.keyring import Keyring, init_keyring
from gateway.ledger.checkpoint import open_note
from gateway.ledger.service import BULK_FROM, Ledger
from gateway.ledger.store import LeafRecord, LedgerStore, StoredCheckpoint
from gateway.ledger.tree import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from gateway.storage import Store
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore
from tests.integration.test_ledger_store import EXPIRED, TODAY, outbox_row, record

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ORIGIN = "gateway.test/transfer-log"


class CountingStore:
    """The store, with every ledger_append call's size recorded (and optionally failing)."""

    def __init__(self, inner: LedgerStore) -> None:
        self.inner = inner
        self.appends: list[int] = []
        self.outboxes: list[list[SideWrite]] = []
        self.node_reads: list[list[tuple[int, int]]] = []
        self.fail_next: Exception | None = None
        self.gate: asyncio.Event | None = None  # when set here, appends wait for it

    async def ledger_append(
        self, records: Sequence[LeafRecord], outbox: Sequence[SideWrite] = ()
    ) -> int:
        self.appends.append(len(records))
        self.outboxes.append(list(outbox))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        return await self.inner.ledger_append(records, outbox)

    async def ledger_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        self.node_reads.append(list(keys))
        return await self.inner.ledger_nodes(keys)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class Ticks:
    """An injectable sleep that returns only when the test calls `tick()`."""

    def __init__(self) -> None:
        self.slept: list[float] = []
        self._go = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await self._go.wait()
        self._go.clear()

    async def tick(self) -> None:
        self._go.set()
        await settle()


async def settle() -> None:
    """Let the ledger's tasks run until they wait on something outside the loop, and then
    some: store calls go to a thread or a socket."""
    for _ in range(5):
        await asyncio.sleep(0.02)


@pytest.fixture
def keyring(tmp_path: Path) -> Keyring:
    return init_keyring(tmp_path / "keys", NOW)[0]


@pytest.fixture
def counting(store: Store) -> CountingStore:
    assert isinstance(store, SqliteStore | PostgresStore)
    return CountingStore(store)


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


def make_ledger(counting: CountingStore, keyring: Keyring, ticks: Ticks, **kw: Any) -> Ledger:
    options: dict[str, Any] = {"checkpoint_every": 10_000, "checkpoint_seconds": 30.0}
    return Ledger(
        store=counting,
        keyring=keyring,
        origin=ORIGIN,
        clock=lambda: NOW,
        sleep=ticks.sleep,
        **(options | kw),
    )


@pytest.fixture
async def ledger(counting: CountingStore, keyring: Keyring, ticks: Ticks) -> AsyncIterator[Ledger]:
    service = make_ledger(counting, keyring, ticks)
    await service.start()
    yield service
    await service.stop()


def records(start: int, count: int, **kw: Any) -> list[LeafRecord]:
    return [record(n, **kw) for n in range(start, start + count)]


def opened(ledger: Ledger, checkpoint: StoredCheckpoint) -> tuple[int, bytes]:
    parsed = open_note(checkpoint.note, ledger.verifier_key(), origin=ORIGIN)
    assert (parsed.size, parsed.root) == (checkpoint.size, checkpoint.root)
    return parsed.size, parsed.root


# group commit


async def test_a_burst_of_appends_is_one_transaction_at_consecutive_indexes(
    ledger: Ledger, counting: CountingStore
) -> None:
    sizes = [1 + n % 4 for n in range(200)]
    starts = [sum(sizes[:n]) for n in range(200)]
    calls = [ledger.append(records(start, size)) for start, size in zip(starts, sizes, strict=True)]
    assert await asyncio.gather(*calls) == starts
    assert counting.appends == [sum(sizes)]
    leaves = await counting.ledger_leaves(0, sum(sizes))
    assert [x.leaf for x in leaves] == [r.leaf for r in records(0, sum(sizes))]


async def test_a_lone_writer_is_committed_at_once_each_time(
    ledger: Ledger, counting: CountingStore
) -> None:
    for n in range(5):
        assert await asyncio.wait_for(ledger.append([record(n)]), timeout=5) == n
    assert counting.appends == [1] * 5


async def test_max_batch_bounds_a_transaction_but_never_splits_a_call(
    counting: CountingStore, keyring: Keyring, ticks: Ticks
) -> None:
    ledger = make_ledger(counting, keyring, ticks, max_batch=10)
    await ledger.start()
    try:
        sizes = [4, 4, 4, 25, 3, 4]
        starts = [sum(sizes[:n]) for n in range(len(sizes))]
        calls = [ledger.append(records(s, n)) for s, n in zip(starts, sizes, strict=True)]
        assert await asyncio.gather(*calls) == starts
    finally:
        await ledger.stop()
    assert counting.appends == [8, 4, 25, 7]


async def test_a_failed_transaction_fails_every_call_in_it(
    ledger: Ledger, counting: CountingStore
) -> None:
    await ledger.append(records(0, 2), [outbox_row("d-1", 0)])
    calls = [
        ledger.append(records(2, 3)),
        ledger.append([record(5)], [outbox_row("d-1", 0)]),  # d-1 is in the outbox already
        ledger.append([record(6)]),
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert [type(r) for r in results] == [StorageError] * 3
    assert await counting.ledger_size() == 2
    counting.fail_next = StorageError("disk full")
    with pytest.raises(StorageError, match="disk full"):
        await ledger.append(records(2, 1))
    assert await ledger.append(records(2, 3)) == 2  # the cached tree was not advanced
    assert await ledger.root(5) == root_from_leaves([r.leaf_hash for r in records(0, 5)])


async def test_outbox_rows_follow_their_calls_records_when_calls_are_joined(
    ledger: Ledger, counting: CountingStore
) -> None:
    calls = [
        ledger.append(records(0, 3), [outbox_row("d-a", 1, 2)]),
        ledger.append(records(3, 1)),
        ledger.append(records(4, 4), [outbox_row("d-b", 0, 2), outbox_row("d-c", 3)]),
    ]
    assert await asyncio.gather(*calls) == [0, 3, 4]
    assert counting.appends == [8]
    rows = [r for r in counting.outboxes[0] if isinstance(r, OutboxRow)]
    assert [(r.delivery_id, r.entries_offset) for r in rows] == [
        ("d-a", 1),
        ("d-b", 4),
        ("d-c", 7),
    ]
    assert isinstance(counting.inner, SqliteStore | PostgresStore)
    stored = await counting.inner.execute_sql(
        "SELECT delivery_id, first_index, entry_count FROM outbox ORDER BY seq"
    )
    assert [tuple(row) for row in stored] == [("d-a", 1, 2), ("d-b", 4, 2), ("d-c", 7, 1)]
    with pytest.raises(ValueError, match="nothing"):
        await ledger.append([], [outbox_row("d-d", 0)])


async def test_small_calls_go_before_bulk_calls_queued_earlier(
    ledger: Ledger, counting: CountingStore
) -> None:
    """A fraud check's entries do not wait for the upload chunks queued before them."""
    counting.gate = asyncio.Event()  # the appender holds the first call's transaction
    first = asyncio.create_task(ledger.append([record(0)]))
    await settle()
    assert counting.appends == [1]
    bulk = [asyncio.create_task(ledger.append(records(1, BULK_FROM + n))) for n in (1, 2)]
    await asyncio.sleep(0)  # queued before the small ones
    sizes = [1, BULK_FROM, 2]  # BULK_FROM records is still a small call
    small = [asyncio.create_task(ledger.append(records(1, size))) for size in sizes]
    await asyncio.sleep(0)
    counting.gate.set()
    assert await first == 0
    assert await asyncio.gather(*small) == [1, 2, BULK_FROM + 2]
    # then the bulk calls, in their order, joined up to max_batch as any calls are
    assert await asyncio.gather(*bulk) == [BULK_FROM + 4, 2 * BULK_FROM + 5]
    assert counting.appends == [1, sum(sizes), 2 * BULK_FROM + 3]


async def test_a_call_cancelled_before_it_was_taken_is_dropped(
    ledger: Ledger, counting: CountingStore
) -> None:
    doomed = asyncio.create_task(ledger.append([record(0)]))
    kept = asyncio.create_task(ledger.append([record(1)]))
    await asyncio.sleep(0)  # both queued; the appender has not run yet
    doomed.cancel()
    assert await kept == 0
    assert [x.leaf for x in await counting.ledger_leaves(0, 5)] == [record(1).leaf]


async def test_appends_need_a_running_ledger(counting: CountingStore, keyring: Keyring) -> None:
    ledger = Ledger(store=counting, keyring=keyring, origin=ORIGIN, clock=lambda: NOW)
    with pytest.raises(RuntimeError):
        await ledger.append([record(0)])
    await ledger.start()
    with pytest.raises(ValueError, match="nothing"):
        await ledger.append([])
    await ledger.stop()
    with pytest.raises(RuntimeError):
        await ledger.append([record(0)])


# checkpoints


async def test_a_checkpoint_follows_every_n_entries(
    counting: CountingStore, keyring: Keyring, ticks: Ticks
) -> None:
    ledger = make_ledger(counting, keyring, ticks, checkpoint_every=10)
    await ledger.start()
    await ledger.append(records(0, 6))
    await settle()
    assert await ledger.latest_checkpoint() is None
    await ledger.append(records(6, 4))
    await settle()
    latest = await ledger.latest_checkpoint()
    assert latest is not None
    assert opened(ledger, latest)[0] == 10
    await ledger.append(records(10, 5))
    await settle()
    assert [c.size for c in await counting.ledger_checkpoints()] == [10]
    await ledger.stop()  # the log grew: a final checkpoint
    assert [c.size for c in await counting.ledger_checkpoints()] == [10, 15]


async def test_appends_during_a_checkpoint_do_not_make_a_second_one_at_once(
    counting: CountingStore, keyring: Keyring, ticks: Ticks
) -> None:
    """An append committed while the due checkpoint is being signed and stored does not
    make another checkpoint right after it: the next one is due N entries after the one
    made (it used to follow at once, a few hundred entries later, doubling the checkpoints
    under steady load)."""
    gate = asyncio.Event()
    store_checkpoint = counting.inner.ledger_add_checkpoint

    async def held(checkpoint: StoredCheckpoint) -> None:
        await gate.wait()
        await store_checkpoint(checkpoint)

    counting.ledger_add_checkpoint = held  # type: ignore[method-assign]
    ledger = make_ledger(counting, keyring, ticks, checkpoint_every=10)
    await ledger.start()
    await ledger.append(records(0, 10))
    await settle()  # the checkpoint of size 10 waits at the gate
    await ledger.append(records(10, 3))  # 13 - 0 >= 10 while it waits
    gate.set()
    await settle()
    assert [c.size for c in await counting.inner.ledger_checkpoints()] == [10]
    await ledger.append(records(13, 7))  # 20 - 10: due again
    await settle()
    assert [c.size for c in await counting.inner.ledger_checkpoints()] == [10, 20]
    await ledger.stop()


async def test_a_checkpoint_follows_each_period_in_which_the_log_grew(
    ledger: Ledger, counting: CountingStore, ticks: Ticks
) -> None:
    await settle()
    assert ticks.slept == [30.0]
    await ticks.tick()
    assert await counting.ledger_checkpoints() == []  # nothing appended yet
    await ledger.append(records(0, 3))
    await ticks.tick()
    await ticks.tick()
    checkpoints = await counting.ledger_checkpoints()
    assert [c.size for c in checkpoints] == [3]
    assert opened(ledger, checkpoints[0])[1] == root_from_leaves(
        [r.leaf_hash for r in records(0, 3)]
    )


async def test_stop_commits_what_is_queued_and_signs_a_final_checkpoint(
    counting: CountingStore, keyring: Keyring, ticks: Ticks
) -> None:
    ledger = make_ledger(counting, keyring, ticks)
    await ledger.start()
    calls = [asyncio.create_task(ledger.append([record(n)])) for n in range(50)]
    await asyncio.sleep(0)
    await ledger.stop()
    assert sorted([await call for call in calls]) == list(range(50))
    latest = await ledger.latest_checkpoint()
    assert latest is not None
    size, root = opened(ledger, latest)
    assert size == 50
    assert root == root_from_leaves([r.leaf_hash for r in records(0, 50)])
    await ledger.stop()  # a second stop is harmless


async def test_checkpoint_returns_the_latest_when_it_covers_the_log(
    ledger: Ledger, counting: CountingStore
) -> None:
    empty = await ledger.checkpoint()
    assert opened(ledger, empty) == (0, EMPTY_ROOT)
    await ledger.append(records(0, 4))
    first = await ledger.checkpoint()
    assert await ledger.checkpoint() == first
    assert [c.size for c in await counting.ledger_checkpoints()] == [0, 4]
    assert first.created_at == NOW


async def test_checkpoints_cover_entries_appended_by_another_writer(
    ledger: Ledger, counting: CountingStore
) -> None:
    await ledger.append(records(0, 2))
    await counting.inner.ledger_append(records(2, 5))  # as another process would
    checkpoint = await ledger.checkpoint()
    assert opened(ledger, checkpoint)[0] == 7
    proof = await ledger.inclusion_proof(6, 7)
    assert verify_inclusion(record(6).leaf_hash, 6, 7, proof, checkpoint.root)


# proofs


async def test_proofs_match_the_reference_and_verify(ledger: Ledger) -> None:
    total = 37
    for start in range(0, total, 5):
        await ledger.append(records(start, min(5, total - start)))
    hashes = [r.leaf_hash for r in records(0, total)]

    def reference(start: int, end: int) -> bytes:
        return root_from_leaves(hashes[start:end])

    for size in range(1, total + 1):
        root = await ledger.root(size)
        assert root == reference(0, size)
        for index in range(0, size, 3):
            proof = await ledger.inclusion_proof(index, size)
            assert proof == inclusion_proof(index, size, reference)
            assert verify_inclusion(hashes[index], index, size, proof, root)
        for old in range(0, size + 1, 4):
            proof = await ledger.consistency_proof(old, size)
            assert proof == consistency_proof(old, size, reference)
            assert verify_consistency(old, size, proof, reference(0, old), root)


@pytest.mark.parametrize(
    ("call", "args"),
    [
        ("inclusion_proof", (3, 3)),
        ("inclusion_proof", (-1, 2)),
        ("inclusion_proof", (0, 6)),
        ("consistency_proof", (3, 2)),
        ("consistency_proof", (-1, 2)),
        ("consistency_proof", (1, 6)),
        ("root", (6,)),
        ("root", (-1,)),
    ],
)
async def test_proofs_outside_the_log_are_refused(
    ledger: Ledger, call: str, args: tuple[int, ...]
) -> None:
    await ledger.append(records(0, 5))
    with pytest.raises(ValueError):
        await getattr(ledger, call)(*args)


async def test_one_store_round_trip_per_proof(ledger: Ledger, counting: CountingStore) -> None:
    await ledger.append(records(0, 1000))
    counting.node_reads.clear()
    await ledger.inclusion_proof(777, 1000)
    await ledger.consistency_proof(333, 1000)
    assert len(counting.node_reads) == 2
    assert all(len(keys) <= 2 * 10 for keys in counting.node_reads)  # O(log n) nodes


# retention


async def test_after_a_purge_proofs_and_checkpoints_still_verify(
    ledger: Ledger, counting: CountingStore
) -> None:
    old = records(0, 9, retain=EXPIRED)
    await ledger.append(old)
    before = await ledger.checkpoint()
    assert await counting.ledger_purge(TODAY) == 9
    assert all(x.leaf is None for x in await counting.ledger_leaves(0, 9))
    await ledger.append(records(9, 4))
    after = await ledger.checkpoint()
    (old_size, old_root), (new_size, new_root) = opened(ledger, before), opened(ledger, after)
    proof = await ledger.consistency_proof(old_size, new_size)
    assert verify_consistency(old_size, new_size, proof, old_root, new_root)
    for index, r in enumerate(old):
        path = await ledger.inclusion_proof(index, new_size)
        assert verify_inclusion(r.leaf_hash, index, new_size, path, new_root)


async def test_constructor_checks(counting: CountingStore, keyring: Keyring) -> None:
    bad_options: list[dict[str, Any]] = [
        {"checkpoint_every": 0},
        {"checkpoint_seconds": 0},
        {"max_batch": 0},
    ]
    for bad in bad_options:
        with pytest.raises(ValueError):
            Ledger(store=counting, keyring=keyring, origin=ORIGIN, clock=lambda: NOW, **bad)
    with pytest.raises(ValueError):
        Ledger(store=counting, keyring=keyring, origin="has space", clock=lambda: NOW)
