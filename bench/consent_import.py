"""Benchmark: stream a synthetic consent JSONL file through `import_consents`, against a floor.

    .venv/bin/python bench/consent_import.py [--lines 1000000] [--backend sqlite|postgres]

The file mixes ~80% grants, ~15% withdrawals (half with an explicit withdrawn_at) and ~0.5% bad
lines (broken JSON, unknown purpose, missing evidence, future timestamp, unknown field). The
floor is a bare sqlite3 `executemany` of the import's own rows, pre-built, in the same batch
transactions, into a same-shaped table (same index, triggers and pragmas): what the import
would cost if parsing and validation were free. Peak RSS is taken right after the import (the
floor's pre-built tuples come later), so comparing --lines 100000 with --lines 1000000 shows
whether memory grows with the file.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from gateway.consent_import import DEFAULT_BATCH_SIZE, ImportResult, import_consents
from gateway.storage import ConsentRow, ConsentStore
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore
from gateway.storage.sqlite_connect import connect as sqlite_connect

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PURPOSES = frozenset({"ad_customer_match", "fraud_detection", "attribute_estimation"})
CHUNK = 1 << 16
BAD_LINES = (
    b'{"subject_id": "m-1", "purpose": "ad_customer_match", "action": "gra',
    b'{"subject_id": "m-1", "purpose": "astrology", "action": "withdraw"}',
    b'{"subject_id": "m-1", "purpose": "fraud_detection", "action": "grant",'
    b' "obtained_at": "2026-01-01T00:00:00Z", "channel": "web"}',
    b'{"subject_id": "m-1", "purpose": "fraud_detection", "action": "withdraw",'
    b' "withdrawn_at": "2030-01-01T00:00:00Z"}',
    b'{"subject_id": "m-1", "purpose": "fraud_detection", "action": "withdraw", "email": "x"}',
)


def rss_mib() -> float:
    # ru_maxrss is KiB on Linux: the peak resident set of this process so far.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_file(path: Path, lines: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    purposes = sorted(PURPOSES)
    with path.open("wb") as out:
        for i in range(lines):
            if i % 200 == 199:
                out.write(BAD_LINES[(i // 200) % len(BAD_LINES)] + b"\n")
                continue
            subject = f"member-{rng.randrange(lines // 3 + 1):08d}"
            purpose = purposes[rng.randrange(3)]
            at = (NOW - timedelta(seconds=rng.randrange(86400 * 700))).isoformat()
            record: dict[str, str] = {"subject_id": subject, "purpose": purpose}
            if rng.random() < 0.84:
                record |= {"action": "grant", "obtained_at": at, "notice_version": "pn-2026-04"}
                record["channel"] = ("web", "app", "store")[rng.randrange(3)]
                if purpose == "ad_customer_match":
                    record["foreign_disclosure_version"] = "us-google-2025-04"
            else:
                record["action"] = "withdraw"
                if rng.random() < 0.5:
                    record["withdrawn_at"] = at
            out.write(json.dumps(record).encode() + b"\n")
        out.flush()
        # On disk before timing starts: its write-back must not compete with the import's fsyncs.
        os.fsync(out.fileno())


async def chunks(path: Path) -> AsyncIterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk


async def open_store(backend: str, folder: Path, url: str) -> tuple[ConsentStore, str | None]:
    if backend == "sqlite":
        return await SqliteStore.open(folder / "gateway.sqlite3"), None
    schema = f"bench_{uuid.uuid4().hex}"
    return await PostgresStore.open(url, schema=schema), schema


async def run_import(
    args: argparse.Namespace, path: Path, folder: Path
) -> tuple[ImportResult, float]:
    store, schema = await open_store(args.backend, folder, args.database_url)
    try:
        started = time.perf_counter()
        result = await import_consents(
            chunks(path),
            fmt="jsonl",
            store=store,
            known_purposes=PURPOSES,
            recorded_by="import:bench",
            now=NOW,
            batch_size=args.batch_size,
        )
        elapsed = time.perf_counter() - started
    finally:
        if isinstance(store, PostgresStore):
            await store.execute_sql(f'DROP SCHEMA "{schema}" CASCADE')
            await store.close()
        elif isinstance(store, SqliteStore):
            await store.close()
    return result, elapsed


class Collector:
    """A ConsentStore that keeps the rows: the floor inserts exactly what the import did."""

    def __init__(self) -> None:
        self.rows: list[tuple[object, ...]] = []

    async def append_consent_rows(
        self, rows: Sequence[ConsentRow], *, recorded_at: datetime, recorded_by: str
    ) -> None:
        at = micros(recorded_at)
        self.rows.extend((*r[:3], micros(r[3]), *r[4:], at, recorded_by) for r in rows)


def micros(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


def floor_rows(path: Path, batch_size: int) -> list[tuple[object, ...]]:
    collector = Collector()
    asyncio.run(
        import_consents(
            chunks(path),
            fmt="jsonl",
            store=collector,  # type: ignore[arg-type]  # only the bulk method is used
            known_purposes=PURPOSES,
            recorded_by="import:bench",
            now=NOW,
            batch_size=batch_size,
        )
    )
    return collector.rows


def run_floor(rows: list[tuple[object, ...]], batch_size: int, folder: Path) -> float:
    """A bare executemany of the import's own rows, pre-built, in the same batch transactions,
    over the store's own connection setup (same schema, index, triggers, pragmas)."""
    conn = sqlite_connect(folder / "floor.sqlite3")
    sql = (
        "INSERT INTO consent_events (subject_id, purpose, action, effective_at, notice_version,"
        " channel, foreign_disclosure_version, recorded_at, recorded_by)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
    )
    started = time.perf_counter()
    for offset in range(0, len(rows), batch_size):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, rows[offset : offset + batch_size])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("GATEWAY_TEST_DATABASE_URL", ""),
        help="PostgreSQL URL for --backend postgres (default: $GATEWAY_TEST_DATABASE_URL)",
    )
    args = parser.parse_args()
    if args.backend == "postgres" and not args.database_url:
        parser.error("--backend postgres needs --database-url or GATEWAY_TEST_DATABASE_URL")
    with tempfile.TemporaryDirectory(prefix="consent-bench-") as tmp:
        folder = Path(tmp)
        path = folder / "consents.jsonl"
        write_file(path, args.lines)
        size_mib = path.stat().st_size / 2**20
        rss_before = rss_mib()
        result, elapsed = asyncio.run(run_import(args, path, folder))
        rss_after = rss_mib()
        accepted = result.granted + result.withdrawn
        floor = run_floor(floor_rows(path, args.batch_size), args.batch_size, folder)
    print(
        f"file            {args.lines:,} lines, {size_mib:,.1f} MiB, backend {args.backend}, "
        f"batch {args.batch_size:,}"
    )
    print(
        f"result          granted {result.granted:,}, withdrawn {result.withdrawn:,}, "
        f"rejected {result.rejected:,} (details kept: {len(result.rejected_lines)})"
    )
    print(f"import          {elapsed:7.2f} s  {args.lines / elapsed:>12,.0f} lines/s")
    print(
        f"floor (sqlite)  {floor:7.2f} s  {accepted / floor:>12,.0f} rows/s"
        "  (executemany of the same rows)"
    )
    print(f"ratio           {elapsed / floor:7.2f} x the floor")
    print(f"peak RSS        {rss_before:7.1f} MiB before import, {rss_after:.1f} MiB after")
    return 0


if __name__ == "__main__":
    sys.exit(main())
