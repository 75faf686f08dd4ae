"""Ids: random (version 4) UUIDs, RFC 9562 §5.4, drawn from os.urandom in bulk; and
time-ordered (version 7) UUIDs, RFC 9562 §5.7, the same random bits behind a millisecond
timestamp, for the ids that the stores index (transfer, job and delivery ids)."""

from __future__ import annotations

import os
import time
from typing import Final

__all__ = ["random_uuid", "time_uuid"]

_UUID_BATCH: Final = 256  # ids drawn per os.urandom call
# RFC 9562 §5.4 spelled 8-4-4-4-12 (36 characters; a space after each id in a batch): the
# version digit (the 13th hex digit) is 4, the variant digit (the 17th) 8, 9, a or b.
_UUID_BLANKS: Final = b"00000000-0000-4000-8000-000000000000 " * _UUID_BATCH
_UUID_STEP: Final = 37
# (hex digit of the 32, its place among the 37 characters): all but the version digit.
_UUID_PLACES: Final = tuple(
    (digit, digit + (digit >= 8) + (digit >= 12) + (digit >= 16) + (digit >= 20))
    for digit in range(32)
    if digit != 12
)
_VARIANT_DIGIT: Final = 16
# A random hex digit to the variant's: 0b10 then the digit's two low bits, which stay random.
_VARIANT: Final = bytes.maketrans(b"0123456789abcdef", b"89ab" * 4)
_uuids: list[str] = []  # formatted, not handed out yet; list.pop is atomic under the GIL
# A forked child must not hand out the ids its parent will (the random module does the same).
os.register_at_fork(after_in_child=_uuids.clear)


def random_uuid() -> str:
    """A random (version 4) UUID, RFC 9562 §5.4, spelled as str(uuid.uuid4()) spells it:
    122 bits from os.urandom, drawn 256 ids at a time. uuid4() costs several times as much
    (a syscall and a UUID object per call), which shows when a million entries are built."""
    try:
        return _uuids.pop()
    except IndexError:
        fresh = _fresh_uuids()
        _uuids.extend(fresh[1:])
        return fresh[0]


def time_uuid() -> str:
    """A time-ordered (version 7) UUID, RFC 9562 §5.7: the Unix time in milliseconds as its
    first 48 bits, then the version (7), 12 random bits, the variant (0b10) and 62 random
    bits, spelled 8-4-4-4-12 in lower case. The 74 random bits are those of a random_uuid
    after its first 48 (its 13th hex digit, the version, is replaced).

    Ids made one after another sort (almost) in creation order, so a b-tree index of them
    grows at its right edge: an insert touches the pages a recent insert touched, where a
    random id lands on a random page of the whole index (one more page written per insert).
    The time it gives away is the creation time the records holding these ids carry anyway.
    """
    stamp = f"{time.time_ns() // 1_000_000:012x}"  # §5.7 unix_ts_ms, 48 bits
    return f"{stamp[:8]}-{stamp[8:]}-7{random_uuid()[15:]}"


def _fresh_uuids() -> list[str]:
    """_UUID_BATCH random UUIDs, formatted a column at a time: each hex digit of every id is
    copied into its place in all of them by one strided slice assignment (C loops, not a
    Python one per id), then the batch is cut at the spaces."""
    digits = os.urandom(16 * _UUID_BATCH).hex().encode()
    out = bytearray(_UUID_BLANKS)
    for digit, place in _UUID_PLACES:
        column = digits[digit::32]
        if digit == _VARIANT_DIGIT:
            column = column.translate(_VARIANT)
        out[place::_UUID_STEP] = column
    return out.decode().split()
