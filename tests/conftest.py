"""Shared fixtures: `store` over each backend, and PostgreSQL helpers others reuse.

PostgreSQL tests need `GATEWAY_TEST_DATABASE_URL` (e.g. postgresql://postgres@127.0.0.1/test);
without it they skip, saying so. Each PostgreSQL test works in a fresh schema `t_<uuid hex>`,
dropped afterwards, so tests never see each other's rows and can run against a shared database.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog

from gateway.storage import Store
from gateway.storage.migrations import (
    POSTGRES_MIGRATIONS,
    SQLITE_MIGRATIONS,
    apply_postgres,
    apply_sqlite,
)
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore

PG_URL_ENV = "GATEWAY_TEST_DATABASE_URL"
PG_SKIP_REASON = "GATEWAY_TEST_DATABASE_URL not set: PostgreSQL store tests skipped"
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """Undo what a test's `gateway.cli.main()` does to logging (configure_logging at level
    warning, stdlib records routed to structlog): left in place, it filters the info events
    every later test's `capture_logs` looks for, so a test passed or failed by its order."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**saved)
    root.handlers[:] = handlers
    root.setLevel(level)


def pg_test_url() -> str:
    """The test database URL; skips the calling test when it is not set."""
    url = os.environ.get(PG_URL_ENV, "")
    if not url:
        pytest.skip(PG_SKIP_REASON)
    return url


def new_schema_name() -> str:
    return f"t_{uuid.uuid4().hex}"


async def drop_schema(url: str, schema: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
def pg_url() -> str:
    """The PostgreSQL test URL (skips without GATEWAY_TEST_DATABASE_URL)."""
    return pg_test_url()


@pytest.fixture
async def pg_schemas(pg_url: str) -> AsyncIterator[Callable[[], str]]:
    """A factory of fresh schema names; every schema it named is dropped after the test.
    `PostgresStore.open(pg_url, schema=name)` creates the schema."""
    names: list[str] = []

    def make() -> str:
        names.append(new_schema_name())
        return names[-1]

    yield make
    for name in names:
        await drop_schema(pg_url, name)


@pytest.fixture
async def pg_schema(pg_schemas: Callable[[], str]) -> str:
    """One fresh schema name, dropped after the test."""
    return pg_schemas()


async def open_test_store(backend: str, tmp_path: Path, schema: str | None = None) -> Store:
    """A store of `backend`: "sqlite" in tmp_path ("sqlite-process": its log appends in a child
    process, as `gateway serve` does), or "postgres" in `schema`."""
    path = tmp_path / "var" / "gateway.sqlite3"
    if backend == "sqlite":
        return await SqliteStore.open(path)
    if backend == "sqlite-process":
        return await SqliteStore.open(path, log_writer="process")
    return await PostgresStore.open(pg_test_url(), schema=schema or new_schema_name())


@asynccontextmanager
async def fresh_store(backend: str, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh, migrated store of `backend` (see open_test_store), closed (and a PostgreSQL
    schema dropped) afterwards."""
    if backend == "postgres":
        pg_test_url()  # skip before creating anything
    schema = new_schema_name() if backend == "postgres" else None
    opened: Store | None = None
    try:
        opened = await open_test_store(backend, tmp_path, schema)
        yield opened
    finally:
        if opened is not None:
            await opened.close()
        if schema is not None:
            await drop_schema(os.environ[PG_URL_ENV], schema)


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A fresh, migrated store: SQLite in tmp_path, then PostgreSQL in a fresh schema."""
    async with fresh_store(request.param, tmp_path) as opened:
        yield opened


def sqlite_params(count: int) -> str:
    """`?, ?, ...`: an INSERT's placeholders in a SQLite fill."""
    return ", ".join("?" * count)


def postgres_params(count: int) -> str:
    """`$1, $2, ...`: an INSERT's placeholders in a PostgreSQL fill."""
    return ", ".join(f"${n}" for n in range(1, count + 1))


FillSqlite = Callable[[sqlite3.Connection], None]
FillPostgres = Callable[["asyncpg.Connection[Any]"], Awaitable[None]]


@asynccontextmanager
async def store_on_old_schema(
    backend: str,
    tmp_path: Path,
    version: int,
    fill_sqlite: FillSqlite,
    fill_postgres: FillPostgres,
) -> AsyncIterator[SqliteStore | PostgresStore]:
    """A store opened (so migrated) on a database an earlier gateway wrote: migrations 1 to
    `version` applied, then `fill_sqlite(conn)` or `await fill_postgres(conn)` writes its rows
    in one transaction (PostgreSQL: search_path set to a new schema, dropped after)."""
    versions = list(range(1, version + 1))
    if backend == "sqlite":
        path = tmp_path / "var" / "gateway.sqlite3"
        path.parent.mkdir(parents=True)
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            assert apply_sqlite(conn, SQLITE_MIGRATIONS[:version]) == versions
            conn.execute("BEGIN")
            fill_sqlite(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()
        store: SqliteStore | PostgresStore = await SqliteStore.open(path)
        try:
            yield store
        finally:
            await store.close()
        return
    url = pg_test_url()
    schema = new_schema_name()
    try:
        pg = await asyncpg.connect(url)
        try:
            assert (
                await apply_postgres(pg, POSTGRES_MIGRATIONS[:version], schema=schema) == versions
            )
            await pg.execute(f'SET search_path TO "{schema}"')
            async with pg.transaction():
                await fill_postgres(pg)
        finally:
            await pg.close()
        store = await PostgresStore.open(url, schema=schema)
        try:
            yield store
        finally:
            await store.close()
    finally:
        await drop_schema(url, schema)
