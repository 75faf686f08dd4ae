"""The multi-instance store: PostgreSQL through an asyncpg pool.

Several gateway processes may share one database: migrations take an advisory lock, bulk
consent imports go through COPY, and batch reads take arrays (`= ANY($1)`), so a bulk
provision of thousands of subjects is two statements.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Any, TypeVar

import asyncpg

from gateway.delivery.outbox import SideWrite
from gateway.errors import ConfigError, StorageError
from gateway.ledger.store import LeafRecord, StoredCheckpoint, StoredLeaf
from gateway.ledger.transfer_filter import TransferFilter
from gateway.models import (
    ClientRecord,
    ConsentEvent,
    Discontinuance,
    Role,
    SubjectState,
)
from gateway.storage import ConsentRow, states_of
from gateway.storage.delivery_store import PostgresDeliveryMixin
from gateway.storage.migrations import POSTGRES_MIGRATIONS, SchemaTooNew, apply_postgres
from gateway.storage.postgres_ledger import PostgresLedger
from gateway.storage.summary_store import PostgresSummaryMixin

T = TypeVar("T")

# Unquoted-identifier shape: the name is interpolated into DDL, so nothing else is accepted.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_EVENT_FIELDS = [
    "subject_id",
    "purpose",
    "action",
    "effective_at",
    "notice_version",
    "channel",
    "foreign_disclosure_version",
    "recorded_at",
    "recorded_by",
]
# SQL is spelled out in full (no string building), so no statement can carry data.
_HISTORY = """SELECT seq, subject_id, purpose, action, effective_at, notice_version, channel,
    foreign_disclosure_version, recorded_at, recorded_by
    FROM consent_events WHERE subject_id = $1 ORDER BY seq"""
# Current state per (subject, purpose): latest effective_at, ties to the later seq; the index
# (subject_id, purpose, effective_at, seq) serves both the filter and the order.
_CURRENT_EVENTS = """SELECT DISTINCT ON (subject_id, purpose) seq, subject_id, purpose, action,
    effective_at, notice_version, channel, foreign_disclosure_version, recorded_at, recorded_by
    FROM consent_events WHERE subject_id = ANY($1::text[])
    ORDER BY subject_id, purpose, effective_at DESC, seq DESC"""
_INSERT_DISCONTINUANCE = """INSERT INTO discontinuances
    (subject_id, partners, reason, requested_at, recorded_by)
    VALUES ($1, $2::jsonb, $3, $4, $5) RETURNING seq"""
_DISCONTINUANCES = """SELECT seq, subject_id, partners, reason, requested_at, recorded_by
    FROM discontinuances WHERE subject_id = ANY($1::text[]) ORDER BY seq"""
# Of the asked subjects, those whose current event for a purpose is a withdrawal (as in
# _CURRENT_EVENTS), and those with a discontinuance for every partner or naming this one.
# One backward index step per subject, and nothing built for the others: the delivery worker
# asks this after every delivered request, and almost nobody in it has withdrawn.
_STOPPED_AMONG = """SELECT s.id AS subject_id, 'consent_withdrawn' AS why
    FROM unnest($1::text[]) AS s(id)
    WHERE (SELECT action FROM consent_events
        WHERE subject_id = s.id AND purpose = $2
        ORDER BY effective_at DESC, seq DESC LIMIT 1) = 'withdraw'
    UNION ALL
    SELECT DISTINCT subject_id, 'discontinuance' AS why FROM discontinuances
    WHERE subject_id = ANY($1::text[])
    AND (partners IS NULL OR partners @> jsonb_build_array($3::text))"""
_INSERT_CLIENT = """INSERT INTO clients
    (client_id, name, role, partners, key_sha256, created_at, revoked_at)
    VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7)"""
_CLIENT = """SELECT client_id, name, role, partners, key_sha256, created_at, revoked_at
    FROM clients WHERE client_id = $1"""
_CLIENTS = """SELECT client_id, name, role, partners, key_sha256, created_at, revoked_at
    FROM clients ORDER BY created_at, client_id"""
_REVOKE = "UPDATE clients SET revoked_at = $2 WHERE client_id = $1 AND revoked_at IS NULL"

# Driver failures: server errors, client/protocol errors, and the network (OSError covers
# refused connections and TimeoutError).
_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    SchemaTooNew,
)


@asynccontextmanager
async def _translated() -> AsyncIterator[None]:
    """The one place asyncpg errors become StorageError."""
    try:
        yield
    except _DRIVER_ERRORS as exc:
        # str(exc) is the server's message only; `detail` (which can quote key values, i.e.
        # personal data) is deliberately left out.
        raise StorageError(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc


def _aware(at: datetime) -> datetime:
    """Raises ValueError for a naive datetime (asyncpg would silently take it as UTC)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("naive datetime: the store keeps timezone-aware instants")
    return at


def _event(row: asyncpg.Record) -> ConsentEvent:
    """_HISTORY's and _CURRENT_EVENTS' columns are ConsentEvent's fields, by name: validated
    from a dict wholly in pydantic's core (2.4 µs an event against 4.0 by keywords)."""
    return ConsentEvent.model_validate(dict(row.items()))


def _discontinuance(row: asyncpg.Record) -> Discontinuance:
    partners = row["partners"]
    return Discontinuance(
        seq=row["seq"],
        subject_id=row["subject_id"],
        partners=None if partners is None else tuple(json.loads(partners)),
        reason=row["reason"],
        requested_at=row["requested_at"],
        recorded_by=row["recorded_by"],
    )


def _client(row: asyncpg.Record) -> ClientRecord:
    return ClientRecord(
        client_id=row["client_id"],
        name=row["name"],
        role=Role(row["role"]),
        partners=tuple(json.loads(row["partners"])),
        key_sha256=row["key_sha256"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def _event_record(e: ConsentEvent) -> tuple[Any, ...]:
    return (
        e.subject_id,
        e.purpose,
        e.action.value,
        _aware(e.effective_at),
        e.notice_version,
        e.channel,
        e.foreign_disclosure_version,
        _aware(e.recorded_at),
        e.recorded_by,
    )


class PostgresStore(PostgresDeliveryMixin, PostgresSummaryMixin):
    """The `Store` over a PostgreSQL database. Build with `await PostgresStore.open(url)`."""

    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._ledger = PostgresLedger(pool)

    @classmethod
    async def open(
        cls, url: str, *, schema: str | None = None, min_size: int = 1, max_size: int = 10
    ) -> PostgresStore:
        """Connect, create `schema` if given and absent, migrate, then pool connections whose
        search_path is that schema. Raises ConfigError for a bad schema name, StorageError."""
        if schema is not None and not _SCHEMA_NAME.fullmatch(schema):
            raise ConfigError(f"schema name {schema!r}: use lowercase letters, digits, _")
        async with _translated():
            conn = await asyncpg.connect(url)
            try:
                if schema is None:
                    schema = await conn.fetchval("SELECT current_schema()")
                    if schema is None:
                        raise StorageError("PostgreSQL: no current schema (check search_path)")
                await apply_postgres(conn, POSTGRES_MIGRATIONS, schema=schema)
            finally:
                await conn.close()
            pool = await asyncpg.create_pool(
                url,
                min_size=min_size,
                max_size=max_size,
                server_settings={"search_path": f'"{schema}"'},
            )
        return cls(pool=pool)

    async def close(self) -> None:
        async with _translated():
            await self._pool.close()

    async def _pg(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run `fn(pool, ...)` with asyncpg errors translated (the delivery mixin's seam)."""
        async with _translated():
            return await fn(self._pool, *args, **kwargs)

    async def execute_sql(self, sql: str, *params: object) -> list[asyncpg.Record]:
        """Run one raw statement (tests, maintenance). Raises StorageError."""
        async with _translated():
            return await self._pool.fetch(sql, *params)

    # consents

    async def append_consent_events(self, events: Sequence[ConsentEvent]) -> None:
        """Append in one transaction. Raises StorageError; ValueError for a naive datetime."""
        if events:
            await self._copy_events([_event_record(e) for e in events])

    async def append_consent_rows(
        self, rows: Sequence[ConsentRow], *, recorded_at: datetime, recorded_by: str
    ) -> None:
        """Append with one COPY (one transaction). Raises StorageError; ValueError for a naive
        datetime."""
        if not rows:
            return
        _aware(recorded_at)
        records = []
        for subject, purpose, action, at, notice, channel, disclosure in rows:
            if at.tzinfo is None:
                _aware(at)
            records.append(
                (
                    subject,
                    purpose,
                    action,
                    at,
                    notice,
                    channel,
                    disclosure,
                    recorded_at,
                    recorded_by,
                )
            )
        await self._copy_events(records)

    async def _copy_events(self, records: list[tuple[Any, ...]]) -> None:
        async with _translated(), self._pool.acquire() as conn:
            await conn.copy_records_to_table(
                "consent_events", records=records, columns=_EVENT_FIELDS
            )

    async def consent_history(self, subject_id: str) -> list[ConsentEvent]:
        """Every event of the subject by seq. Raises StorageError."""
        async with _translated():
            rows = await self._pool.fetch(_HISTORY, subject_id)
        return [_event(row) for row in rows]

    async def subject_states(self, subject_ids: Sequence[str]) -> dict[str, SubjectState]:
        """Current consents and discontinuances for each id, in two statements on one
        snapshot. Raises StorageError."""
        ids = list(dict.fromkeys(subject_ids))
        if not ids:
            return {}
        async with (
            _translated(),
            self._pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            events = await conn.fetch(_CURRENT_EVENTS, ids)
            stops = await conn.fetch(_DISCONTINUANCES, ids)
        consents: dict[str, dict[str, ConsentEvent]] = {subject: {} for subject in ids}
        for row in events:
            consents[row["subject_id"]][row["purpose"]] = _event(row)
        found: dict[str, list[Discontinuance]] = {subject: [] for subject in ids}
        for row in stops:
            found[row["subject_id"]].append(_discontinuance(row))
        return states_of(ids, consents, found)

    async def stopped_among(
        self, subject_ids: Sequence[str], *, purpose: str, partner_id: str
    ) -> dict[str, str]:
        """See ConsentStore.stopped_among: one statement, one snapshot. Raises
        StorageError."""
        ids = list(dict.fromkeys(subject_ids))
        if not ids:
            return {}
        async with _translated():
            rows = await self._pool.fetch(_STOPPED_AMONG, ids, purpose, partner_id)
        found: dict[str, str] = {}
        for row in sorted(rows, key=lambda r: r["why"] == "discontinuance"):
            found[row["subject_id"]] = row["why"]  # a discontinuance wins
        return found

    async def append_discontinuance(self, item: Discontinuance) -> Discontinuance:
        """Raises StorageError; ValueError for a naive datetime."""
        partners = None if item.partners is None else json.dumps(list(item.partners))
        async with _translated():
            seq = await self._pool.fetchval(
                _INSERT_DISCONTINUANCE,
                item.subject_id,
                partners,
                item.reason,
                _aware(item.requested_at),
                item.recorded_by,
            )
        return item.model_copy(update={"seq": seq})

    # clients

    async def create_client(self, client: ClientRecord) -> None:
        """Raises StorageError when the id (or the key hash) exists."""
        async with _translated():
            await self._pool.execute(
                _INSERT_CLIENT,
                client.client_id,
                client.name,
                client.role.value,
                json.dumps(list(client.partners)),
                client.key_sha256,
                _aware(client.created_at),
                None if client.revoked_at is None else _aware(client.revoked_at),
            )

    async def get_client(self, client_id: str) -> ClientRecord | None:
        """Raises StorageError."""
        async with _translated():
            row = await self._pool.fetchrow(_CLIENT, client_id)
        return None if row is None else _client(row)

    async def list_clients(self) -> list[ClientRecord]:
        """Every client, oldest first. Raises StorageError."""
        async with _translated():
            rows = await self._pool.fetch(_CLIENTS)
        return [_client(row) for row in rows]

    async def revoke_client(self, client_id: str, at: datetime) -> bool:
        """False when there is no such active client. Raises StorageError."""
        async with _translated():
            status = await self._pool.execute(
                _REVOKE,
                client_id,
                _aware(at),
            )
        return bool(status == "UPDATE 1")

    # transfer log: the LedgerStore of gateway/ledger/store.py (SQL in postgres_ledger.py)

    async def ledger_append(
        self, records: Sequence[LeafRecord], outbox: Sequence[SideWrite] = ()
    ) -> int:
        """One transaction (with the side writes) under an advisory lock, durable on return.
        Raises StorageError; ValueError for a leaf hash not 32 bytes or a naive time."""
        async with _translated():
            return await self._ledger.append(records, outbox)

    async def ledger_size(self) -> int:
        async with _translated():
            return await self._ledger.size()

    async def ledger_nodes(self, keys: Sequence[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        """Raises StorageError, also when one is missing."""
        async with _translated():
            return await self._ledger.nodes(keys)

    async def ledger_leaves(self, start: int, end: int) -> list[StoredLeaf]:
        async with _translated():
            return await self._ledger.leaves(start, end)

    async def ledger_add_checkpoint(self, checkpoint: StoredCheckpoint) -> None:
        async with _translated():
            await self._ledger.add_checkpoint(checkpoint)

    async def ledger_checkpoints(self, *, latest_only: bool = False) -> list[StoredCheckpoint]:
        async with _translated():
            return await self._ledger.checkpoints(latest_only=latest_only)

    async def ledger_find(self, flt: TransferFilter, *, after: int, limit: int) -> list[StoredLeaf]:
        async with _translated():
            return await self._ledger.find(flt, after=after, limit=limit)

    async def ledger_transfer(self, transfer_id: str) -> list[StoredLeaf]:
        async with _translated():
            return await self._ledger.transfer(transfer_id)

    async def ledger_purge(self, today: date) -> int:
        """Raises StorageError (also when the database's clock finds an entry unexpired)."""
        async with _translated():
            return await self._ledger.purge(today)
