"""Migration 7 on rejections written under migration 3's key (a database at version 6).

The old layout is written by hand, as the gateway of versions 3 to 6 did: rows keyed by
(job_id, line, code), at most one per code and line. After the store opens (and migrates) the
database, every old row is still there, with its ordinal in code order within its line (the
order the download listed them in), the download pages through them, and a line may now hold
the same code twice.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.delivery.outbox import JobRejections, NewJob, Rejection
from gateway.errors import StorageError
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore
from gateway.storage.sqlite_time import to_micros
from tests.conftest import BACKENDS, postgres_params, sqlite_params, store_on_old_schema

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
V6 = 6
JOBS = ("job-a", "job-b")
# (job, line, code, field): the rows of the old key, inserted out of order on purpose.
OLD_ROWS = [
    ("job-a", 2, "unknown_field", None),
    ("job-a", 1, "invalid_phone", "phone"),
    ("job-a", 2, "invalid_email", "email"),
    ("job-a", 1, "empty", "given_name"),
    ("job-a", 1, "invalid_hash", "phone_sha256"),
    ("job-a", 7, "no_identifier", None),
    ("job-b", 1, "invalid_phone", "phone"),
    ("job-b", 1, "empty", "family_name"),
]
# Per job, in the order the migrated store lists them: (line, ordinal, code).
MIGRATED = {
    "job-a": [
        (1, 0, "empty"),
        (1, 1, "invalid_hash"),
        (1, 2, "invalid_phone"),
        (2, 0, "invalid_email"),
        (2, 1, "unknown_field"),
        (7, 0, "no_identifier"),
    ],
    "job-b": [(1, 0, "empty"), (1, 1, "invalid_phone")],
}

_JOB = """INSERT INTO jobs (job_id, client_id, idempotency_key, request_sha256, kind,
    partner_id, destination, purpose, legal_basis, transfer_id, created_at, updated_at)
    VALUES ({})"""
_REJECTION = """INSERT INTO job_rejections (job_id, line, subject_id, code, field, message)
    VALUES ({})"""


def job_row(job_id: str, at: object) -> tuple[Any, ...]:
    return (
        *(job_id, "client-1", f"key-{job_id}", "0" * 64, "customer_match"),
        *("google-customer-match", "default", "ad_customer_match", "consent", f"t-{job_id}"),
        *(at, at),
    )


def rejection_rows() -> list[tuple[Any, ...]]:
    return [(j, line, f"s-{line}", code, field, f"{code}!") for j, line, code, field in OLD_ROWS]


def fill_sqlite(conn: sqlite3.Connection) -> None:
    at = to_micros(NOW)
    conn.executemany(_JOB.format(sqlite_params(12)), [job_row(j, at) for j in JOBS])
    conn.executemany(_REJECTION.format(sqlite_params(6)), rejection_rows())


async def fill_postgres(conn: asyncpg.Connection[Any]) -> None:
    job = _JOB.format(postgres_params(12))
    await conn.executemany(job, [job_row(j, NOW) for j in JOBS])
    rejection = _REJECTION.format(postgres_params(6))
    await conn.executemany(rejection, rejection_rows())


@pytest.fixture(params=BACKENDS)
async def migrated(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[SqliteStore | PostgresStore]:
    """A store opened on a version-6 database holding OLD_ROWS."""
    async with store_on_old_schema(
        request.param, tmp_path, V6, fill_sqlite, fill_postgres
    ) as store:
        yield store


async def listed(store: SqliteStore | PostgresStore, job_id: str, limit: int) -> list[Any]:
    """(line, ordinal, code) of every row of the job, paged by `limit`."""
    out: list[tuple[tuple[int, int], Rejection]] = []
    page = await store.job_rejections(job_id, limit=limit)
    while page:
        out += page
        page = await store.job_rejections(job_id, after=page[-1][0], limit=limit)
    return [(*key, r.code) for key, r in out]


async def test_old_rows_get_ordinals_in_code_order_and_page_whole(
    migrated: SqliteStore | PostgresStore,
) -> None:
    versions = await migrated.execute_sql("SELECT version FROM schema_migrations")
    assert (7,) in {tuple(v) for v in versions}
    for job_id in JOBS:
        for limit in (1, 2, 4, 100):
            assert await listed(migrated, job_id, limit) == MIGRATED[job_id]
    rows = await migrated.job_rejections("job-a", limit=1)
    assert rows == [((1, 0), Rejection(1, "s-1", "empty", "given_name", "empty!"))]


async def test_a_line_may_hold_one_code_twice_after_the_migration(
    migrated: SqliteStore | PostgresStore,
) -> None:
    new = NewJob(
        job_id="job-c", client_id="client-1", idempotency_key="key-c", request_sha256="0" * 64,
        kind="customer_match", partner_id="google-customer-match", destination="default",
        purpose="ad_customer_match", legal_basis="consent", transfer_id="t-job-c",
        created_at=NOW,
    )  # fmt: skip
    await migrated.create_job(new)
    twice = (
        Rejection(4, "s-4", "empty", "given_name", "m"),
        Rejection(4, "s-4", "empty", "family_name", "m"),
    )
    await migrated.apply_side_writes([JobRejections("job-c", twice)])
    assert await migrated.job_rejections("job-c", limit=10) == [
        ((4, 0), twice[0]),
        ((4, 1), twice[1]),
    ]
    # The key is the new one, and the database holds to it.
    with pytest.raises(StorageError):
        await migrated.execute_sql(
            "INSERT INTO job_rejections (job_id, line, ordinal, subject_id, code, field, message)"
            " VALUES ('job-c', 4, 1, NULL, 'other', NULL, 'm')"
        )
    with pytest.raises(StorageError):
        await migrated.execute_sql(
            "INSERT INTO job_rejections (job_id, line, subject_id, code, field, message)"
            " VALUES ('job-c', 5, NULL, 'no_ordinal', NULL, 'm')"
        )
    with pytest.raises(StorageError):
        await migrated.execute_sql(
            "INSERT INTO job_rejections (job_id, line, ordinal, subject_id, code, field, message)"
            " VALUES ('job-c', 5, -1, NULL, 'negative', NULL, 'm')"
        )


async def test_the_table_is_keyed_by_line_and_ordinal(
    migrated: SqliteStore | PostgresStore,
) -> None:
    if isinstance(migrated, SqliteStore):
        names = await migrated.execute_sql(
            "SELECT name FROM sqlite_master WHERE name LIKE 'job_rejections%'"
        )
        assert sorted(tuple(n) for n in names) == [("job_rejections",)]  # no copy left over
        columns = await migrated.execute_sql("PRAGMA table_info(job_rejections)")
        key = [name for _, name, _, _, _, pk in sorted(columns, key=lambda c: c[5]) if pk]
    else:
        rows = await migrated.execute_sql(
            """SELECT a.attname FROM pg_index AS i
                   CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k (attnum, n)
                   JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                   WHERE i.indrelid = 'job_rejections'::regclass AND i.indisprimary
                   ORDER BY k.n"""
        )
        key = [row[0] for row in rows]
    assert key == ["job_id", "line", "ordinal"]
