"""Recompute the transfer log from its entries and check every signed checkpoint against it.

Pure over iterables, so `gateway ledger verify` (from the database) and `gateway ledger verify
--offline DIR` (from an export) run the same checks:

- every index from 0 up is present, in order (a deleted or reordered row is a gap);
- every entry's content hashes to its stored leaf hash, RFC 9162 §2.1.1 (purged content is not
  hashed: its leaf hash still stands);
- no content is missing before it could lawfully have been purged, as far as the log can date
  it (`earliest_lawful_purge`; docs/ledger.md §5.2 gives the rule and what it cannot catch);
- every checkpoint is a C2SP signed note under one of the log's verifier keys, for this origin,
  and its root equals the Merkle Tree Hash recomputed from the first `size` leaf hashes. Two
  checkpoints whose roots both equal the recomputed prefixes of one sequence are consistent
  (RFC 9162 §2.1.4) by construction, so a forked or rewritten log fails here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Final

from gateway.ledger.checkpoint import CheckpointError, open_note
from gateway.ledger.entries import RecordingMethod, retain_until
from gateway.ledger.store import StoredCheckpoint, StoredLeaf
from gateway.ledger.tree import NONE_KEPT, TreeState, leaf_hash

STAMP_SLACK: Final = timedelta(days=1)
"""How much earlier than an entry appended before it an entry may be stamped: the time between
taking `now` for an entry and appending it (a large upload builds its entries first), and the
clock differences between gateway processes appending to one log."""


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
    purged: int  # entries whose content is gone
    failure: Failure | None
    # Of `purged`: those the log could not date (no earlier entry's content left, or no date
    # to check against was given), so whether they went early is unknown.
    purged_undated: int = 0

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


def entry_time(leaf: bytes) -> datetime | None:
    """The `time` of a log entry (RFC 3339, with an offset); None for content without one."""
    try:
        value = json.loads(leaf)["time"]
        at = datetime.fromisoformat(value) if isinstance(value, str) else None
    except (ValueError, KeyError, TypeError):  # JSON and UTF-8 errors are ValueErrors
        return None
    return at if at is not None and at.tzinfo is not None else None


def earliest_lawful_purge(after: datetime) -> date:
    """The first date on which the content of an entry appended after one stamped `after` may
    lawfully be gone.

    Such an entry was stamped no earlier than `after - STAMP_SLACK`; its retain_until is at
    least the shortest retention from then (APPI Art. 29(2), PPC Rules Art. 21: 1 year, where a
    contract stands in for the record; `retain_until` is the rule the entries are written
    with); and a purge deletes content only once retain_until is before the database's date.
    """
    floor = after - STAMP_SLACK
    shortest = min(retain_until(floor, method) for method in RecordingMethod)
    return shortest + timedelta(days=1)


class Verifier:
    """Incremental: `feed` leaves in index order (in chunks, as read), then `finish`.

    `as_of` is a date by which the log was read: today for a database, the day an export was
    made or received for an export. Content missing before `earliest_lawful_purge` of the
    nearest earlier entry whose content remains fails verification; without `as_of`, purged
    entries are counted as undated and not checked."""

    def __init__(
        self,
        checkpoints: Sequence[StoredCheckpoint],
        *,
        vkeys: Sequence[str],
        origin: str,
        as_of: date | None = None,
    ) -> None:
        self._pending = sorted(checkpoints, key=lambda c: c.size)
        self._total = len(self._pending)
        self._tree = TreeState()
        self._count = 0
        self._purged = 0
        self._undated = 0
        self._as_of = as_of
        # The nearest earlier entry with content (index, leaf), and its time: parsed only when
        # a purged entry needs it, once per run of purged entries.
        self._dating: tuple[int, bytes] | None = None
        self._dated: tuple[int, tuple[datetime, date] | None] | None = None
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

    def _dated_by(self) -> tuple[int, datetime, date] | None:
        """The nearest earlier entry with content, its time and `earliest_lawful_purge` of
        that time; None if there is none, or it has no time."""
        if self._dating is None:
            return None
        index, leaf = self._dating
        if self._dated is None or self._dated[0] != index:
            at = entry_time(leaf)
            self._dated = (index, None if at is None else (at, earliest_lawful_purge(at)))
        found = self._dated[1]
        return None if found is None else (index, *found)

    def _check_purge(self, index: int) -> Failure | None:
        self._purged += 1
        dated = self._dated_by() if self._as_of is not None else None
        if dated is None or self._as_of is None:
            self._undated += 1
            return None
        before, at, lawful = dated
        if self._as_of >= lawful:
            return None
        reason = (
            f"content purged before its retention could end: the entry was appended after "
            f"entry {before} ({at.isoformat()}), so it had to be kept until at least "
            f"{lawful - timedelta(days=1)}; it is gone on {self._as_of}"
        )
        return Failure("entry", index, reason)

    def feed(self, leaves: Iterable[StoredLeaf]) -> bool:
        """Verify the next leaves; False once something failed."""
        hashes: list[bytes] = []
        for leaf in leaves:
            if self.failure is None:
                self.failure = _check_leaf(leaf, self._count)
            if self.failure is None:
                if leaf.leaf is None:
                    self.failure = self._check_purge(leaf.index)
                else:
                    self._dating = (leaf.index, leaf.leaf)
            if self.failure is not None:
                return False
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
        return Report(self._count, self._total, self._purged, self.failure, self._undated)


def verify_log(
    leaves: Iterable[StoredLeaf],
    checkpoints: Sequence[StoredCheckpoint],
    *,
    vkeys: Sequence[str],
    origin: str,
    as_of: date | None = None,
) -> Report:
    """Verify `leaves` (ascending) against `checkpoints`; stop at the first failure."""
    verifier = Verifier(checkpoints, vkeys=vkeys, origin=origin, as_of=as_of)
    verifier.feed(leaves)
    return verifier.finish()
