"""How the SQLite backend keeps instants: integer microseconds since the Unix epoch, UTC.

One spelling per instant, so ordering and range filters are plain integer comparisons.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def to_micros(at: datetime) -> int:
    """Raises ValueError for a naive datetime (it has no defined instant)."""
    try:
        return (at - _EPOCH) // _MICROSECOND
    except TypeError:
        raise ValueError("naive datetime: the store keeps timezone-aware instants") from None


def from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)
