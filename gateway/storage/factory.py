"""Choose the backend from the settings: PostgreSQL when a URL is given, else embedded SQLite."""

from __future__ import annotations

from pathlib import Path

from gateway.errors import ConfigError
from gateway.settings import LogWriterMode
from gateway.storage import Store
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


async def open_store(
    *, database_url: str, sqlite_path: Path, log_writer: LogWriterMode = "thread"
) -> Store:
    """`postgresql://` or `postgres://` → PostgresStore; empty → SqliteStore at `sqlite_path`
    (its log appends where `log_writer` says).

    Raises ConfigError for any other URL (the message does not echo it: it may hold a
    password), StorageError when the database cannot be opened or migrated.
    """
    if not database_url:
        return await SqliteStore.open(sqlite_path, log_writer=log_writer)
    if database_url.startswith(_POSTGRES_SCHEMES):
        return await PostgresStore.open(database_url)
    scheme = database_url.partition(":")[0] if ":" in database_url else "(none)"
    raise ConfigError(
        f"GATEWAY_DATABASE_URL: unsupported scheme {scheme!r}; use postgresql://... or leave "
        "it empty for SQLite"
    )
