"""The transfer log's storage seam: what a backend (SQLite, PostgreSQL) must provide.

Tables behind it (both backends; layout and codecs in gateway/storage/ledger_layout.py):

    ledger_leaves       idx, leaf_hash                    append-only: never updated or deleted
    ledger_chunks       first_idx, count, transfer_id, partner_id, purpose, time_min,
                        time_max, retain_until, codec, data
                        the content (canonical JSON leaves, zlib-compressed) of up to 256
                        consecutive entries of one append sharing transfer, partner and
                        purpose; never updated; a row may be deleted only after its
                        retain_until (retention purge: the content goes, the leaf hashes stay)
    ledger_subjects     subject_id, idx                   who each entry is about; never
                        updated; a row is deleted only once its entry's chunk is gone (SQLite
                        stages the newest rows in ledger_subjects_recent, by idx)
    ledger_nodes        level, idx, hash                  append-only: complete aligned
                        subtrees of level >= 4 (lower ones are computed from the leaf hashes)
    ledger_checkpoints  size, root, note, created_at      append-only: signed checkpoints

The database enforces those rules with triggers, so a bug or a hand-written statement cannot
rewrite history without dropping a trigger first (and `gateway ledger verify` catches that too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, NamedTuple, Protocol

from gateway.delivery.outbox import SideWrite

if TYPE_CHECKING:  # a pydantic model: the log writer process, which needs none, loads none
    from gateway.ledger.transfer_filter import TransferFilter


class LeafRecord(NamedTuple):
    """One log entry ready to append: its canonical bytes, leaf hash and what the store indexes
    it by. A NamedTuple: immutable, and built at a fifth of a frozen dataclass's cost, which
    shows when a million are made. `entry_id`, `legal_basis` and `outcome` are not stored
    apart from the leaf (filters on the last two read the leaf); the store relies on `time`,
    `legal_basis`, `outcome`, `subject_id`, `partner_id`, `purpose` and `transfer_id` being
    the leaf's own values."""

    leaf: bytes  # RFC 8785 canonical JSON of the entry
    leaf_hash: bytes  # SHA-256(0x00 || leaf), RFC 9162 §2.1.1
    entry_id: str
    transfer_id: str
    time: datetime
    subject_id: str
    partner_id: str
    purpose: str
    legal_basis: str
    outcome: str
    retain_until: date


@dataclass(frozen=True, slots=True)
class StoredLeaf:
    index: int
    leaf_hash: bytes
    leaf: bytes | None  # None once retention purged the content


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    size: int
    root: bytes
    note: str  # the C2SP signed note, as served
    created_at: datetime


class LedgerStore(Protocol):
    async def ledger_append(
        self, records: Sequence[LeafRecord], outbox: Sequence[SideWrite] = ()
    ) -> int:
        """Append `records` in one durable transaction, at consecutive indexes after the
        current end, with their content, subject index rows and every newly complete aligned
        subtree node that is stored; and apply the `outbox` side writes (gateway/delivery/
        outbox.py: outbox rows, delivery outcomes, job progress and rejections) in that same
        transaction, an outbox row's `entries_offset` counting from the first of `records`
        (the store turns it into the log index). All are committed, or none.

        Safe with concurrent writers in other processes (PostgreSQL: an advisory lock
        serialises appends). Returns the index of the first record. Raises StorageError;
        ValueError for a leaf hash not 32 bytes or a naive time.
        """

    async def ledger_size(self) -> int:
        """How many leaves the log holds."""

    async def ledger_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Hashes of complete aligned subtrees by (level, index), any level; level 0 is the
        leaf hashes. Raises StorageError when one is missing (a log whose nodes were tampered
        with, or a subtree not complete yet)."""

    async def ledger_leaves(self, start: int, end: int) -> list[StoredLeaf]:
        """Leaves [start, end) in index order, with content unless purged."""

    async def ledger_add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        """Store a signed checkpoint; one per size (a second one for a size is ignored)."""

    async def ledger_checkpoints(self, *, latest_only: bool = False) -> list[StoredCheckpoint]:
        """Stored checkpoints by size ascending (or only the largest)."""

    async def ledger_find(self, flt: TransferFilter, *, after: int, limit: int) -> list[StoredLeaf]:
        """Entries matching the filter with index > after, ascending, at most `limit`: fewer
        only when no more match. Purged entries match nothing."""

    async def ledger_transfer(self, transfer_id: str) -> list[StoredLeaf]:
        """Every entry of one transfer, ascending."""

    async def ledger_purge(self, today: date) -> int:
        """Delete the content (and subject index rows) of entries whose retain_until is
        before today; leaf hashes and nodes stay, so old proofs and checkpoints still verify.
        Content goes a chunk at a time: a chunk is kept until the latest retain_until of its
        entries. Returns how many entries' content went."""
