"""Recompute the transfer log from its entries and check every signed checkpoint against it.

Pure over iterables, so `gateway ledger verify` (from the database) and `gateway ledger verify
--offline DIR` (from an export) run the same checks:

- every index from 0 up is present, in order (a deleted or reordered row is a gap);
- every entry's content hashes to its stored leaf hash, RFC 9162 §2.1.1 (purged content, which
  retention removed, is skipped: its leaf hash still stands);
- every checkpoint is a C2SP signed note under one of the log's verifier keys, for this origin,
  and its root equals the Merkle Tree Hash recomputed from the first `size` leaf hashes. Two
  checkpoints whose roots both equal the recomputed prefixes of one sequence are consistent
  (RFC 9162 §2.1.4) by construction, so a forked or rewritten log fails here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.ledger.checkpoint import CheckpointError, open_note
from gateway.ledger.store import StoredCheckpoint, StoredLeaf
from gateway.ledger.tree import NONE_KEPT, TreeState, leaf_hash


@dataclass(frozen=True)
class Failure:
    """The first thing that does not verify: an entry (by index) or a checkpoint (by size)."""

    kind: str  # "entry" or "checkpoint"
    position: int
    reason: str

    def __str__(self) -> str:
        where = f"entry {self.position}" if self.kind == "entry" else f"checkpoint {self.position}"
        return f"{where}: {self.reason}"


@dataclass(frozen=True)
class Report:
    entries: int
    checkpoints: int
    purged: int
    failure: Failure | None

    @property
    def ok(self) -> bool:
        return self.failure is None


def _check_note(cp: StoredCheckpoint, vkeys: Sequence[str], origin: str) -> Failure | None:
    try:
        opened = open_note(cp.note, vkeys, origin=origin)
    except CheckpointError as exc:
        return Failure("checkpoint", cp.size, f"signed note does not verify: {exc}")
    if opened.size != cp.size or opened.root != cp.root:
        return Failure("checkpoint", cp.size, "stored size or root differs from the signed note")
    return None


def _check_leaf(leaf: StoredLeaf, expected: int) -> Failure | None:
    if leaf.index != expected:
        return Failure("entry", expected, f"missing: the next stored entry is {leaf.index}")
    if leaf.leaf is not None and leaf_hash(leaf.leaf) != leaf.leaf_hash:
        return Failure("entry", leaf.index, "content does not match its leaf hash")
    return None


class Verifier:
    """Incremental: `feed` leaves in index order (in chunks, as read), then `finish`."""

    def __init__(
        self, checkpoints: Sequence[StoredCheckpoint], *, vkeys: Sequence[str], origin: str
    ) -> None:
        self._pending = sorted(checkpoints, key=lambda c: c.size)
        self._total = len(self._pending)
        self._tree = TreeState()
        self._count = 0
        self._purged = 0
        self.failure: Failure | None = None
        for cp in self._pending:
            if failure := _check_note(cp, vkeys, origin):
                self.failure = failure
                return
        self._settle()

    def _settle(self) -> None:
        """Check, and drop, the checkpoints of exactly the entries seen so far."""
        while self.failure is None and self._pending and self._pending[0].size == self._count:
            if self._tree.root() != self._pending.pop(0).root:
                reason = "root does not match the entries: the log was altered"
                self.failure = Failure("checkpoint", self._count, reason)

    def feed(self, leaves: Iterable[StoredLeaf]) -> bool:
        """Verify the next leaves; False once something failed."""
        hashes: list[bytes] = []
        for leaf in leaves:
            if self.failure is None:
                self.failure = _check_leaf(leaf, self._count)
            if self.failure is not None:
                return False
            self._purged += leaf.leaf is None
            hashes.append(leaf.leaf_hash)
            self._count += 1
            if self._pending and self._count == self._pending[0].size:
                self._tree, _ = self._tree.extend(hashes, keep_from=NONE_KEPT)
                hashes = []
                self._settle()
        if hashes:
            self._tree, _ = self._tree.extend(hashes, keep_from=NONE_KEPT)
        return self.failure is None

    def finish(self) -> Report:
        if self.failure is None and self._pending:
            size = self._pending[0].size
            reason = f"covers {size} entries but the log has {self._count}"
            self.failure = Failure("checkpoint", size, reason)
        return Report(self._count, self._total, self._purged, self.failure)


def verify_log(
    leaves: Iterable[StoredLeaf],
    checkpoints: Sequence[StoredCheckpoint],
    *,
    vkeys: Sequence[str],
    origin: str,
) -> Report:
    """Verify `leaves` (ascending) against `checkpoints`; stop at the first failure."""
    verifier = Verifier(checkpoints, vkeys=vkeys, origin=origin)
    verifier.feed(leaves)
    return verifier.finish()
