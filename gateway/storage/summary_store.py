"""The summaries side of a Store: statistical summaries recipients post back (both backends).

The statements live in sqlite_summaries.py and postgres_summaries.py (table: migration 5,
gateway/storage/summaries_schema.py); these mixins give them the store's async shape, as
gateway/storage/delivery_store.py does for the outbox.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from gateway.storage import postgres_summaries as pg
from gateway.storage import sqlite_summaries as lite

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class SummaryRecord:
    """One accepted summary. `body` is the summary as checked (JSON text); `seq` is set by
    the store (0 before it is stored)."""

    summary_id: str
    partner_id: str
    upload_id: str  # the recipient's id of the upload it summarises
    client_id: str  # the recipient's client that posted it
    dimensions: tuple[str, ...]
    cells: int
    body: str
    body_sha256: str  # of the bytes received: the receipt entry's payload_sha256
    entry_id: str  # the receipt entry in the transfer log
    received_at: datetime
    seq: int = 0


class SummaryStore(Protocol):
    async def insert_summary(self, summary: SummaryRecord) -> tuple[SummaryRecord, bool]:
        """Store `summary` unless its (partner, upload id) has one: the stored summary and
        whether it is this one. Raises StorageError; ValueError for a naive time."""

    async def summary_of_upload(self, partner_id: str, upload_id: str) -> SummaryRecord | None:
        """The stored summary of that upload. Raises StorageError."""

    async def partner_summaries(
        self, partner_id: str, *, after_seq: int, limit: int
    ) -> list[SummaryRecord]:
        """A partner's summaries with seq > after_seq, oldest first. Raises StorageError."""


class SqliteSummaryMixin:
    async def _run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # SqliteStore's

    async def insert_summary(self, summary: SummaryRecord) -> tuple[SummaryRecord, bool]:
        stored, created = await self._run(partial(lite.insert_summary, row=_row(summary)))
        return _record(stored), created

    async def summary_of_upload(self, partner_id: str, upload_id: str) -> SummaryRecord | None:
        op = partial(lite.summary_of_upload, partner_id=partner_id, upload_id=upload_id)
        row = await self._run(op)
        return None if row is None else _record(row)

    async def partner_summaries(
        self, partner_id: str, *, after_seq: int, limit: int
    ) -> list[SummaryRecord]:
        op = partial(
            lite.partner_summaries, partner_id=partner_id, after_seq=after_seq, limit=limit
        )
        return [_record(row) for row in await self._run(op)]


class PostgresSummaryMixin:
    async def _pg(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        raise NotImplementedError  # PostgresStore's: fn(pool, *args, **kwargs), translated

    async def insert_summary(self, summary: SummaryRecord) -> tuple[SummaryRecord, bool]:
        stored, created = await self._pg(pg.insert_summary, _row(summary))
        return _record(stored), created

    async def summary_of_upload(self, partner_id: str, upload_id: str) -> SummaryRecord | None:
        row = await self._pg(pg.summary_of_upload, partner_id, upload_id)
        return None if row is None else _record(row)

    async def partner_summaries(
        self, partner_id: str, *, after_seq: int, limit: int
    ) -> list[SummaryRecord]:
        rows = await self._pg(pg.partner_summaries, partner_id, after_seq=after_seq, limit=limit)
        return [_record(row) for row in rows]


def _row(s: SummaryRecord) -> lite.SummaryRow:
    """The columns in table order after seq (both dialects take the same tuple)."""
    return (
        *(s.summary_id, s.partner_id, s.upload_id, s.client_id, s.dimensions, s.cells),
        *(s.body, s.body_sha256, s.entry_id, s.received_at),
    )


def _record(row: tuple[Any, ...]) -> SummaryRecord:
    """A stored row: seq, then the columns of `_row`."""
    seq, sid, partner, upload, client, dims, cells, body, sha, entry, at = row
    return SummaryRecord(
        summary_id=sid,
        partner_id=partner,
        upload_id=upload,
        client_id=client,
        dimensions=tuple(dims),
        cells=int(cells),
        body=body,
        body_sha256=sha,
        entry_id=entry,
        received_at=at,
        seq=int(seq),
    )
