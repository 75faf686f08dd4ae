"""The transfer log service: group-committed appends, signed checkpoints, proofs from the store.

Appends (APPI Art. 29 records, Art. 30 receipts) are group-committed: every `append` call queues
its records (and the side writes to make with them) with a future, and one appender task takes
everything queued at that moment (up to `max_batch` records, never splitting one call) into one
`LedgerStore.ledger_append` transaction. A lone writer is committed at once; under load, the
calls that arrive while one transaction commits share the next one, so the number of durable
commits (fsyncs) per second stays small while the entries per second grow. `append` returns
only once its transaction is durable.

Small calls go first: the appender takes calls of up to `BULK_FROM` records (a fraud check's
provision or verdict, a consent's) before any larger one (an upload's chunk of ten thousand,
its delivery outcomes), each kind in the order it came. A bulk transaction takes tens to
hundreds of milliseconds, and an upload queues several at once (a chunk and the outcomes of
four deliveries); a fraud check queued behind them all would wait for every one. Now it waits
for the one under way at most. Every caller awaits its own call, so no caller sees the
difference in order; the log's indexes follow the order of commits, as they always did.

Checkpoints are C2SP tlog-checkpoint notes signed with the keyring's log-signing key
(docs/ledger.md §3), made after every `checkpoint_every` new entries, every
`checkpoint_seconds` while the log grows, on `checkpoint()` and when the service stops.

Proofs (RFC 9162 §2.1.3, §2.1.4) and roots are computed from the stored nodes of complete
subtrees: the ranges an algorithm asks for depend only on the sizes, so a dry run with
placeholder hashes names every node it needs, one `ledger_nodes` call fetches them, and the
real run reads them from memory. One store round trip per proof, O(log n) nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Final, TypeAlias

import structlog

from gateway.delivery.outbox import SideWrite
from gateway.keyring import Keyring
from gateway.ledger.checkpoint import checkpoint_body, sign_note, verifier_key
from gateway.ledger.store import LeafRecord, LedgerStore, StoredCheckpoint
from gateway.ledger.tree import (
    EMPTY_ROOT,
    HASH_SIZE,
    SubtreeSource,
    consistency_proof,
    inclusion_proof,
    perfect_subtrees,
    range_hash,
)

__all__ = ["BULK_FROM", "Ledger", "Sleep"]

log = structlog.get_logger("gateway.ledger")

Sleep: TypeAlias = Callable[[float], Awaitable[None]]
_Pending: TypeAlias = tuple[Sequence[LeafRecord], Sequence[SideWrite], "asyncio.Future[int]"]
_PLACEHOLDER: Final = bytes(HASH_SIZE)
# Calls of more records than this wait while smaller ones are queued (module docstring).
BULK_FROM: Final = 1_000


class Ledger:
    """The transfer log of one gateway process. Call `start()` before `append`, `stop()` last.

    Several processes may run a Ledger over one PostgreSQL database: the store serialises
    their appends, and checkpoints and proofs cover whatever all of them appended.
    """

    def __init__(
        self,
        *,
        store: LedgerStore,
        keyring: Keyring,
        origin: str,
        clock: Callable[[], datetime],
        checkpoint_every: int = 10_000,
        checkpoint_seconds: float = 60.0,
        max_batch: int = 5_000,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        """Raises ValueError for a non-positive checkpoint_every, checkpoint_seconds or
        max_batch; CheckpointError for an origin that cannot be a key name; ConfigError when
        the keyring has no log-signing key."""
        if checkpoint_every < 1 or checkpoint_seconds <= 0 or max_batch < 1:
            raise ValueError("checkpoint_every, checkpoint_seconds and max_batch must be > 0")
        self._store = store
        self._keyring = keyring
        self._origin = origin
        self._clock = clock
        self._checkpoint_every = checkpoint_every
        self._checkpoint_seconds = checkpoint_seconds
        self._max_batch = max_batch
        self._sleep = sleep
        self._vkey = verifier_key(origin, keyring.signing_public_key())  # fails fast
        self._queue: deque[_Pending] = deque()  # calls of up to BULK_FROM records
        self._bulk: deque[_Pending] = deque()  # larger ones
        self._wakeup = asyncio.Event()  # something was queued, or stop() began
        self._due = asyncio.Event()  # a checkpoint is due, or stop() began
        self._checkpoint_lock = asyncio.Lock()
        self._size = 0  # the log's size as last seen by this process (others may append)
        self._checkpointed = 0  # the size of the latest checkpoint seen
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # lifecycle

    async def start(self) -> None:
        """Read the size and latest checkpoint, start the appender and the checkpointers.
        Raises StorageError; RuntimeError when already started."""
        if self._tasks or self._closing:
            raise RuntimeError("the ledger was already started")
        self._size = await self._store.ledger_size()
        latest = await self.latest_checkpoint()
        self._checkpointed = latest.size if latest else 0
        self._tasks = [
            asyncio.create_task(self._append_loop(), name="ledger-appender"),
            asyncio.create_task(self._checkpoint_loop(), name="ledger-checkpointer"),
            asyncio.create_task(self._tick_loop(), name="ledger-checkpoint-timer"),
        ]

    async def stop(self) -> None:
        """Refuse new appends, commit every queued one, sign a final checkpoint if the log grew
        since the last, stop the tasks. Raises StorageError from that checkpoint."""
        if not self._tasks or self._closing:
            return
        self._closing = True
        appender, checkpointer, timer = self._tasks
        timer.cancel()
        self._wakeup.set()
        self._due.set()
        try:
            await appender  # drains the queue, then returns
            await checkpointer  # finishes a checkpoint under way, then returns
        finally:
            for task in self._tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        if self._size > self._checkpointed:
            await self.checkpoint()

    # appends

    async def append(self, records: Sequence[LeafRecord], outbox: Sequence[SideWrite] = ()) -> int:
        """Append `records` at consecutive indexes, and apply the `outbox` side writes (an
        outbox row's `entries_offset` counting from the first of `records`) in the same
        transaction; returns the index of the first record, once the transaction holding them
        is durable. Calls joined in one transaction keep their rows' offsets pointing at their
        own records (`shifted`).

        Records of a call cancelled before the appender took them are dropped; once taken
        they are committed with the rest of their group. Raises ValueError for no records
        (also when there are side writes), RuntimeError when the ledger is not running, and
        whatever the store raised for the group's transaction (StorageError; ValueError for
        a malformed record or row).
        """
        if not records:
            raise ValueError("nothing to append")
        if not self._tasks or self._closing:
            raise RuntimeError("the ledger is not running")
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        (self._bulk if len(records) > BULK_FROM else self._queue).append((records, outbox, future))
        self._wakeup.set()
        return await future

    async def _append_loop(self) -> None:
        while self._queue or self._bulk or not self._closing:
            if not (self._queue or self._bulk):
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            await self._commit(self._take(self._queue) or self._take(self._bulk))

    def _take(self, queue: deque[_Pending]) -> list[_Pending]:
        """What `queue` holds right now, up to max_batch records; a call is never split, and
        one larger than max_batch goes alone."""
        group: list[_Pending] = []
        count = 0
        while queue:
            records, _, future = queue[0]
            if future.done():  # its caller was cancelled before we took it
                queue.popleft()
                continue
            if group and count + len(records) > self._max_batch:
                break
            group.append(queue.popleft())
            count += len(records)
        return group

    async def _commit(self, group: list[_Pending]) -> None:
        if not group:
            return
        if len(group) == 1:
            records, outbox, _ = group[0]
        else:  # each call's rows move by where its records start in the joined list
            records, outbox, position = [], [], 0
            for call, rows, _ in group:
                records.extend(call)
                outbox.extend(row.shifted(position) for row in rows)
                position += len(call)
        try:
            first = await self._store.ledger_append(records, outbox)
        except asyncio.CancelledError:
            for *_, future in group:
                future.cancel()
            raise
        except Exception as exc:  # every caller of the transaction learns why it failed
            for *_, future in group:
                if not future.done():
                    future.set_exception(exc)
            return
        index = first
        for call, _, future in group:
            if not future.done():
                future.set_result(index)
            index += len(call)
        self._size = max(self._size, index)
        if self._size - self._checkpointed >= self._checkpoint_every:
            self._due.set()

    # checkpoints

    async def _checkpoint_loop(self) -> None:
        while True:
            await self._due.wait()
            self._due.clear()
            if self._closing:
                return  # stop() makes the final one
            try:
                await self.checkpoint()
            except Exception:  # the next one covers these entries too; say so and go on
                log.exception("ledger_checkpoint_failed", size=self._size)
                continue
            # Appends committed while it was made found it not yet made and set _due again;
            # the next is due N entries after this one (or at the next tick, or on stop).
            if not self._closing and self._size - self._checkpointed < self._checkpoint_every:
                self._due.clear()

    async def _tick_loop(self) -> None:
        while True:
            await self._sleep(self._checkpoint_seconds)
            if self._size > self._checkpointed:
                self._due.set()

    async def checkpoint(self) -> StoredCheckpoint:
        """Sign and store a checkpoint of the whole log as stored now (every process's
        appends); the latest stored one when it already covers that size. Raises
        StorageError."""
        async with self._checkpoint_lock:
            size = await self._store.ledger_size()
            self._size = max(self._size, size)
            latest = await self.latest_checkpoint()
            if latest is not None and latest.size >= size:
                self._checkpointed = max(self._checkpointed, latest.size)
                return latest
            root = await self._root(size)
            body = checkpoint_body(self._origin, size, root)  # c2sp.org/tlog-checkpoint
            note = sign_note(body, self._origin, self._keyring.signing_key())  # signed-note
            made = StoredCheckpoint(size=size, root=root, note=note, created_at=self._clock())
            await self._store.ledger_add_checkpoint(made)
            self._checkpointed = max(self._checkpointed, size)
        log.info("ledger_checkpoint", size=size)
        return made

    async def latest_checkpoint(self) -> StoredCheckpoint | None:
        """Raises StorageError."""
        found = await self._store.ledger_checkpoints(latest_only=True)
        return found[0] if found else None

    def verifier_key(self) -> str:
        """The C2SP verifier key of the log's current signing key (docs/ledger.md §3.2)."""
        return self._vkey

    # proofs

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 §2.1.3.1 PATH(index, D[0:size]). Raises ValueError unless
        0 <= index < size <= the log's size; StorageError."""
        if not 0 <= index < size:
            raise ValueError(f"leaf {index} is not in a tree of size {size}")
        await self._require_size(size)
        return await self._prove(lambda subtree: inclusion_proof(index, size, subtree))

    async def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 §2.1.4.1 PROOF(old_size, D[0:new_size]). Raises ValueError unless
        0 <= old_size <= new_size <= the log's size; StorageError."""
        if not 0 <= old_size <= new_size:
            raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
        await self._require_size(new_size)
        return await self._prove(lambda subtree: consistency_proof(old_size, new_size, subtree))

    async def root(self, size: int) -> bytes:
        """MTH(D[0:size]) (RFC 9162 §2.1.1). Raises ValueError unless 0 <= size <= the log's
        size; StorageError."""
        await self._require_size(size)
        return await self._root(size)

    async def _root(self, size: int) -> bytes:
        if size == 0:
            return EMPTY_ROOT
        return (await self._prove(lambda subtree: [subtree(0, size)]))[0]

    async def _require_size(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"no tree of size {size}")
        if size > self._size:  # maybe another process appended: ask the store
            self._size = max(self._size, await self._store.ledger_size())
            if size > self._size:
                raise ValueError(f"the log holds {self._size} entries, fewer than {size}")

    async def _prove(self, algorithm: Callable[[SubtreeSource], list[bytes]]) -> list[bytes]:
        """Run `algorithm` twice: with placeholders to learn the ranges it reads, then on the
        nodes of those ranges, fetched in one store call."""
        ranges: list[tuple[int, int]] = []

        def record(start: int, end: int) -> bytes:
            ranges.append((start, end))
            return _PLACEHOLDER

        algorithm(record)
        keys = sorted({key for start, end in ranges for key in perfect_subtrees(start, end)})
        nodes = await self._store.ledger_nodes(keys) if keys else {}
        return algorithm(lambda start, end: range_hash(start, end, lambda *key: nodes[key]))
