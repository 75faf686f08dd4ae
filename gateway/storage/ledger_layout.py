"""How the transfer log is laid out in its tables (migration 4), shared by both stores.

- Nodes: `ledger_nodes` holds the complete subtrees of level >= NODE_MIN_LEVEL only. A node of
  a lower level (at most 2^3 = 8 leaves) is computed on read from the leaf hashes under it, so
  the stored rows drop from ~n to ~n/16 while a read of any node stays one range read.
- Chunks: the content of a run of consecutive records of one append that share
  (transfer_id, partner_id, purpose), at most CHUNK_MAX records, is one `ledger_chunks` row.
  Codec 'zlib': zlib (level 1) of the leaves, each prefixed with its length as a 4-byte
  big-endian integer; codec 'none' (count 1): the leaf itself (rows migrated from
  ledger_entries). Entries of one transfer are near-identical JSON, so a run compresses to a
  fraction of its size, and one row per run replaces one wide row per entry.
- Filters: a chunk's columns decide transfer, partner and purpose exactly and prune by time
  (time_min, time_max); the per-entry time, legal basis and outcome are tested on the decoded
  leaf (`EntryTest`).

Pure: no I/O. Decoding raises StorageError for content that does not decode (tampered).
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Final

from gateway.errors import StorageError
from gateway.ledger.store import LeafRecord
from gateway.ledger.tree import root_from_leaves

if TYPE_CHECKING:  # a pydantic model: the log writer process loads none
    from gateway.ledger.transfer_filter import TransferFilter

NODE_MIN_LEVEL: Final = 4
SMALL_APPEND: Final = 64
"""An append of fewer records (a fraud check's provision or verdict, a lone writer's entry) is
a store's hot path, where a few microseconds of zlib are cheaper than handing them to a thread
and waiting for it: both stores encode its chunk where they are, and PostgreSQL writes its
rows in one statement rather than by COPY (each COPY is round trips)."""
"""The lowest level of ledger_nodes rows; levels 1 .. NODE_MIN_LEVEL - 1 are computed."""
CHUNK_MAX: Final = 256
"""The most records in one ledger_chunks row (the tables CHECK it: readers rely on it to
find the chunk holding an index with a bounded primary-key range read)."""
ZLIB: Final = "zlib"
NONE: Final = "none"

_ZLIB_LEVEL: Final = 1  # ~11 % of a run of similar entries at ~5 µs a leaf; level 6: 4x slower
_LENGTH: Final = struct.Struct(">I")


# nodes


def leaf_span(level: int, index: int) -> range:
    """The leaf indexes under node (level, index)."""
    return range(index << level, (index + 1) << level)


def leaves_needed(keys: Iterable[tuple[int, int]]) -> set[int]:
    """The leaf indexes whose hashes answer the keys below NODE_MIN_LEVEL (level 0 too)."""
    needed: set[int] = set()
    for level, index in keys:
        if level < NODE_MIN_LEVEL:
            needed.update(leaf_span(level, index))
    return needed


def assemble_nodes(
    keys: Iterable[tuple[int, int]],
    stored: Mapping[tuple[int, int], bytes],
    leaves: Mapping[int, bytes],
) -> dict[tuple[int, int], bytes]:
    """Every key's hash: stored nodes as read, lower ones from their leaf hashes. Raises
    StorageError naming the first key that is missing (or one of whose leaves is)."""
    found: dict[tuple[int, int], bytes] = {}
    for key in keys:
        level, index = key
        if level >= NODE_MIN_LEVEL:
            value = stored.get(key)
        else:
            hashes = [leaves.get(i) for i in leaf_span(level, index)]
            value = None if None in hashes else root_from_leaves(hashes)  # type: ignore[arg-type]
        if value is None:
            raise StorageError(f"the transfer log has no node {key}: tampered?")
        found[key] = value
    return found


# chunks


@dataclass(frozen=True, slots=True)
class Chunk:
    """One ledger_chunks row to insert; `offset` counts from the append's first record."""

    offset: int
    count: int
    transfer_id: str
    partner_id: str
    purpose: str
    time_min: datetime
    time_max: datetime
    retain_until: date
    data: bytes  # codec ZLIB


def encode(leaves: Sequence[bytes]) -> bytes:
    """Codec 'zlib': zlib of the length-prefixed leaves."""
    pack = _LENGTH.pack
    return zlib.compress(b"".join([part for x in leaves for part in (pack(len(x)), x)]), 1)


def decode(first: int, count: int, codec: str, data: bytes) -> list[bytes]:
    """The `count` leaves of a chunk. Raises StorageError for content that does not decode."""
    if codec == NONE and count == 1:
        return [bytes(data)]
    if codec != ZLIB:
        raise StorageError(f"the transfer log's chunk at {first} has codec {codec!r}: tampered?")
    try:
        raw = zlib.decompress(data)
        leaves = []
        offset, end = 0, len(raw)
        unpack = _LENGTH.unpack_from
        while offset < end:
            size = unpack(raw, offset)[0]
            offset += 4
            leaves.append(raw[offset : offset + size])
            offset += size
    except (zlib.error, struct.error):
        leaves, offset, end = [], 1, 0
    if offset != end or len(leaves) != count:
        raise StorageError(f"the transfer log's chunk at {first} does not decode: tampered?")
    return leaves


def runs(records: Sequence[LeafRecord]) -> list[tuple[int, int]]:
    """The [start, end) offsets of one append's runs of records sharing (transfer_id,
    partner_id, purpose), at most CHUNK_MAX each: its chunks."""
    spans = []
    total = len(records)
    start = 0
    while start < total:
        head = records[start]
        tid, pid, purpose = head.transfer_id, head.partner_id, head.purpose
        end = start + 1
        stop = min(total, start + CHUNK_MAX)
        while end < stop:
            r = records[end]
            if r.transfer_id != tid or r.partner_id != pid or r.purpose != purpose:
                break
            end += 1
        spans.append((start, end))
        start = end
    return spans


def chunk(records: Sequence[LeafRecord], start: int, end: int) -> Chunk:
    """The chunk of the run records[start:end], encoded. Raises ValueError for a naive time."""
    run = records[start:end]
    times = [r.time for r in run]
    if any(t.utcoffset() is None for t in times):
        raise ValueError("naive datetime: the store keeps timezone-aware instants")
    head = run[0]
    return Chunk(
        offset=start,
        count=end - start,
        transfer_id=head.transfer_id,
        partner_id=head.partner_id,
        purpose=head.purpose,
        time_min=min(times),
        time_max=max(times),
        retain_until=max(r.retain_until for r in run),
        data=encode([r.leaf for r in run]),
    )


def chunks(records: Sequence[LeafRecord]) -> list[Chunk]:
    """Every chunk of one append, encoded. Raises ValueError for a naive time."""
    return [chunk(records, start, end) for start, end in runs(records)]


# filters


class EntryTest:
    """The part of a TransferFilter that a chunk's columns cannot decide: the exact time of
    each entry (the columns only bound a chunk's times), its legal basis and its outcome.

    The store's SQL applies partner, purpose and the time bounds to the chunk columns (and
    subject to ledger_subjects); this tests each entry of the chunks it returns.
    """

    def __init__(self, flt: TransferFilter) -> None:
        self._since = flt.since
        self._until = flt.until
        self._legal_basis = flt.legal_basis
        self._outcome = flt.outcome
        self._content = flt.legal_basis is not None or flt.outcome is not None

    def decided(self, time_min: datetime, time_max: datetime) -> bool:
        """True when every entry of a chunk with these times matches (what the SQL checked
        holds): no per-entry test is needed, nor its leaves parsed."""
        if self._content:
            return False
        return (self._since is None or time_min >= self._since) and (
            self._until is None or time_max < self._until
        )

    def __call__(self, leaf: bytes) -> bool:
        """Whether the entry matches; an entry that is not the JSON object of a log entry
        matches nothing here."""
        try:
            entry = json.loads(leaf)
            if self._outcome is not None and entry["outcome"] != self._outcome:
                return False
            if self._legal_basis is not None and (entry["legal_basis"] or "") != self._legal_basis:
                return False
            if self._since is None and self._until is None:
                return True
            at = datetime.fromisoformat(entry["time"])
            return (self._since is None or at >= self._since) and (
                self._until is None or at < self._until
            )
        except (ValueError, KeyError, TypeError):
            return False
