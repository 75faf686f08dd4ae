"""Migration 8 on an outbox written at version 7, and the owed removal check it adds.

The old rows are written by hand, as the gateway of version 7 did. After the store opens (and
migrates) the database, the ingest that was already delivered owes its check for withdrawals
(it may have been lost before the mark existed); nothing else does. From then on, recording
an ingest as delivered marks its check owed in the same write, and `removal_checked` clears it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.delivery.outbox import DeliveryState, OutboxDone
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore
from gateway.storage.sqlite_time import to_micros
from tests.conftest import BACKENDS, postgres_params, sqlite_params, store_on_old_schema

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)
V7 = 7
# (delivery id, operation, state): only the delivered ingest owes a check.
OLD_ROWS = [
    ("d-ingest-delivered", "ingest", "delivered"),
    ("d-ingest-pending", "ingest", "pending"),
    ("d-ingest-dead", "ingest", "dead"),
    ("d-remove-delivered", "remove", "delivered"),
    ("d-upload-delivered", "upload", "delivered"),
]
_OUTBOX = """INSERT INTO outbox (delivery_id, job_id, partner_id, operation, transfer_id,
    first_index, entry_count, content_type, payload, meta, state, attempts, next_attempt_at,
    created_at, updated_at) VALUES ({})"""


def outbox_rows(at: object) -> list[tuple[Any, ...]]:
    partner, body = "google-customer-match", ("application/json", b"{}", b"{}")
    return [
        (delivery_id, None, partner, operation, f"t-{delivery_id}", n, 1, *body, state, 1)
        + (at,) * 3
        for n, (delivery_id, operation, state) in enumerate(OLD_ROWS)
    ]


def fill_sqlite(conn: sqlite3.Connection) -> None:
    conn.executemany(_OUTBOX.format(sqlite_params(15)), outbox_rows(to_micros(NOW)))


async def fill_postgres(conn: asyncpg.Connection[Any]) -> None:
    insert = _OUTBOX.format(postgres_params(15))
    await conn.executemany(insert, outbox_rows(NOW))


@pytest.fixture(params=BACKENDS)
async def migrated(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SqliteStore | PostgresStore]:
    """A store opened on a version-7 database holding OLD_ROWS."""
    async with store_on_old_schema(
        request.param, tmp_path, V7, fill_sqlite, fill_postgres
    ) as store:
        yield store


async def owed(store: SqliteStore | PostgresStore, limit: int = 10) -> list[str]:
    return [row.delivery_id for row in await store.removal_checks_owed(after_seq=0, limit=limit)]


async def test_an_ingest_delivered_before_the_migration_owes_its_check(
    migrated: SqliteStore | PostgresStore,
) -> None:
    assert await owed(migrated) == ["d-ingest-delivered"]
    await migrated.removal_checked("d-ingest-delivered")
    assert await owed(migrated) == []


async def test_recording_an_ingest_delivered_marks_its_check_owed(
    migrated: SqliteStore | PostgresStore,
) -> None:
    await migrated.removal_checked("d-ingest-delivered")
    await migrated.apply_side_writes(
        [
            OutboxDone("d-ingest-pending", DeliveryState.DELIVERED, 2, None, NOW),
            OutboxDone("d-ingest-dead", DeliveryState.DEAD, 5, "gave up", NOW),
        ]
    )
    assert await owed(migrated) == ["d-ingest-pending"]
    row = await migrated.delivery("d-ingest-pending")
    assert row is not None
    assert (row.state, row.attempts) == (DeliveryState.DELIVERED, 2)


async def test_owed_checks_are_paged_in_outbox_order(
    migrated: SqliteStore | PostgresStore,
) -> None:
    await migrated.apply_side_writes(
        [OutboxDone("d-ingest-pending", DeliveryState.DELIVERED, 1, None, NOW)]
    )
    (first,) = await migrated.removal_checks_owed(after_seq=0, limit=1)
    assert first.delivery_id == "d-ingest-delivered"
    rest = await migrated.removal_checks_owed(after_seq=first.seq, limit=10)
    assert [row.delivery_id for row in rest] == ["d-ingest-pending"]
