"""Transfer-log throughput and latency against the database's floor, per backend.

    .venv/bin/python bench/ledger.py [--entries 200000] [--backend sqlite|postgres|both]
        [--writers 50] [--per-call 10] [--ids uuid7|uuid4] [--build-processes 0]
        [--database-url URL]

Per backend, in one run (each throughput phase on an empty log):

(a) floor: the same rows (a realistic 1.1 KB leaf and the entry's query columns) inserted into
    a plain table (primary key only: no secondary index, trigger or tree) in transactions of
    1,000, durably (SQLite: the store's own connection and pragmas, executemany; PostgreSQL:
    one COPY per transaction, the fastest bulk path of asyncpg). Rows/s.
(b) gateway: `--writers` tasks each building transfers of `--per-call` entries with
    `gateway.ledger.templates.TransferEntries` (the bulk path, `shape` once and `record_shaped`
    per person: byte for byte what `provision_entry` + `to_record` give, RFC 8785 + SHA-256,
    for a real `decide()` decision for partners/google-customer-match.toml), and appending each
    transfer with `Ledger.append` (group commit, checkpoints every 10,000). The people (subject
    id, subject key, payload hash: the inputs a caller hands the log) are drawn at random
    before the clock starts; building their entries is timed. Entries/s, end to
    end; and the same with the records built before the clock starts (the log's own capacity);
    and `LedgerStore.ledger_append` alone on those records, as many a call as group commit takes
    (`--writers` x `--per-call`), one call after the other (the store's own cost).
    `--build-processes N` builds in N processes instead of on the event loop; transfer ids are
    time-ordered (RFC 9562 version 7) as the gateway makes them, `--ids uuid4` random ones
    (entry ids are random, as the gateway's).
(c) one writer alone: one append of one entry at a time; p50/p99 ms until durable. And the
    same writer during (b)'s end-to-end phase, beside the `--writers` (its few entries are not
    counted in (b)'s rate): what group commit makes a single waiting writer wait under load.
(d) `Ledger.inclusion_proof` at the final size for 2,000 random indexes; p50/p99 ms.

Targets (issue): >= 50,000 entries/s on SQLite and >= 30,000/s on PostgreSQL, a lone writer
durable within 10 ms, inclusion proofs p99 < 2 ms. PostgreSQL runs in a fresh schema, dropped
afterwards (default URL: $GATEWAY_TEST_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg

from gateway.contracts import PartnerContract, load_contract
from gateway.delivery.outbox import SideWrite
from gateway.keyring import init_keyring
from gateway.ledger.canonical import fast_path_applies
from gateway.ledger.entries import Outcome, provision_entry, to_record
from gateway.ledger.entry_ids import random_uuid, time_uuid
from gateway.ledger.service import Ledger
from gateway.ledger.store import LeafRecord
from gateway.ledger.templates import TransferEntries
from gateway.models import ConsentAction, ConsentEvent, LegalBasis, SubjectState
from gateway.policy import Decision, ProvisionItem, decide
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore
from gateway.storage.sqlite_connect import connect as sqlite_connect

REPO = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PURPOSE = "ad_customer_match"
FLOOR_BATCH = 1_000
FLOOR_TABLE = """CREATE TABLE bench_floor (idx {int} PRIMARY KEY, leaf {blob}, entry_id text,
    transfer_id text, time {time}, subject_id text, partner_id text, purpose text,
    legal_basis text, outcome text, retain_until {date})"""
Store = SqliteStore | PostgresStore


# Transfer ids: the gateway's (time-ordered, services.new_id) or random ones, to compare.
IDS: dict[str, Callable[[], str]] = {"uuid4": random_uuid, "uuid7": time_uuid}


class Builder:
    """Transfers of realistic entries: one decide() per run, one entry per subject."""

    def __init__(self, contract: PartnerContract, ids: str = "uuid7", *, seed: int = 1) -> None:
        self.contract = contract
        self.rnd = random.Random(seed)
        self.new_id = IDS[ids]
        grant = ConsentEvent(
            subject_id="cust-0",
            purpose=PURPOSE,
            action=ConsentAction.GRANT,
            effective_at=NOW,
            notice_version="pn-2026-04",
            channel="web",
            foreign_disclosure_version="us-google-2025-04",
            recorded_at=NOW,
            recorded_by="import:crm",
        )
        state = SubjectState(subject_id="cust-0", consents={PURPOSE: grant})
        item = ProvisionItem(
            subject_id="cust-0",
            purpose=PURPOSE,
            legal_basis=LegalBasis.CONSENT,
            fields=("email", "phone", "region_code", "postal_code"),
        )
        self.decision: Decision = decide(item, contract, state, NOW)
        assert self.decision.allowed, self.decision.reasons
        self.drawn: list[tuple[str, str, str]] = []  # people drawn ahead (`draw`)

    def people(self, count: int) -> list[tuple[str, str, str]]:
        """(subject id, subject key, payload SHA-256) of `count` random people."""
        rnd = self.rnd
        return [
            (
                f"cust-{rnd.randrange(10**8):08d}",
                f"k1:{rnd.getrandbits(256):064x}",
                f"{rnd.getrandbits(256):064x}",
            )
            for _ in range(count)
        ]

    def draw(self, count: int) -> None:
        """Draw `count` people ahead: `transfer` takes them before drawing more."""
        self.drawn = self.people(count)

    def next_people(self, count: int) -> list[tuple[str, str, str]]:
        if len(self.drawn) < count:
            return self.people(count)
        taken, self.drawn[-count:] = self.drawn[-count:], []
        return taken

    def transfer(self, count: int) -> list[LeafRecord]:
        """The gateway's bulk path as the customer-match planner takes it: one TransferEntries
        per transfer, the shape of the decision the people share (DecisionCache.decide_shared
        hands out one decision per kind of person, and each person's evidence apart) taken
        once, and an entry per person from it (record_shaped)."""
        entries = TransferEntries(
            contract=self.contract,
            outcome=Outcome.ALLOWED,
            transfer_id=self.new_id(),
            time=datetime.now(UTC),
        )  # entry ids: TransferEntries' own (random_uuid), as in the gateway
        shape = entries.shape(self.decision)
        evidence = self.decision.evidence
        record = entries.record_shaped
        return [
            record(
                shape, subject_id=subject, subject_key=key, evidence=evidence, payload_sha256=sha
            )
            for subject, key, sha in self.next_people(count)
        ]


_BUILDER: list[Builder] = []  # one per build process


def _start_builder(ids: str, seed: int) -> None:
    contract = load_contract(REPO / "partners" / "google-customer-match.toml", NOW.date())
    _BUILDER.append(Builder(contract, ids, seed=seed))


def _build(count: int) -> list[LeafRecord]:
    return _BUILDER[0].transfer(count)


def floor_rows(builder: Builder, count: int, *, sqlite: bool) -> list[tuple[Any, ...]]:
    """`count` rows shaped as ledger_entries rows: real leaves (cycled), fresh ids."""
    leaves = builder.transfer(FLOOR_BATCH)
    rows = []
    for i in range(count):
        r = leaves[i % FLOOR_BATCH]
        at: Any = int(r.time.timestamp() * 1e6) if sqlite else r.time
        until: Any = r.retain_until.isoformat() if sqlite else r.retain_until
        subject = f"cust-{builder.rnd.randrange(10**8):08d}"
        head = (i, r.leaf, builder.new_id(), r.transfer_id, at, subject, r.partner_id)
        rows.append((*head, r.purpose, r.legal_basis, r.outcome, until))
    return rows


def floor_sqlite(path: Path, rows: list[tuple[Any, ...]]) -> float:
    conn = sqlite_connect(path)  # the store's pragmas: WAL, synchronous=FULL, cache
    conn.execute(FLOOR_TABLE.format(int="INTEGER", blob="BLOB", time="INTEGER", date="TEXT"))
    insert = f"INSERT INTO bench_floor VALUES ({', '.join('?' * 11)})"
    started = time.perf_counter()
    for offset in range(0, len(rows), FLOOR_BATCH):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, rows[offset : offset + FLOOR_BATCH])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return len(rows) / elapsed


async def floor_postgres(url: str, schema: str, rows: list[tuple[Any, ...]]) -> float:
    conn = await asyncpg.connect(url, server_settings={"search_path": schema})
    try:
        await conn.execute(
            FLOOR_TABLE.format(int="bigint", blob="bytea", time="timestamptz", date="date")
        )
        started = time.perf_counter()
        for offset in range(0, len(rows), FLOOR_BATCH):
            async with conn.transaction():
                chunk = rows[offset : offset + FLOOR_BATCH]
                await conn.copy_records_to_table("bench_floor", records=chunk)
        return len(rows) / (time.perf_counter() - started)
    finally:
        await conn.close()


def make_ledger(store: Store, folder: Path) -> Ledger:
    keyring, _ = init_keyring(folder / "keys", NOW)
    return Ledger(
        store=store,
        keyring=keyring,
        origin="bench.example/transfer-log",
        clock=lambda: datetime.now(UTC),
    )


Make: TypeAlias = Callable[[], list[LeafRecord] | Awaitable[list[LeafRecord]]]


async def gateway_rate(
    ledger: Ledger,
    make: Make,
    entries: int,
    writers: int,
    probe: Callable[[], list[LeafRecord]] | None = None,
) -> tuple[float, list[float]]:
    """Entries/s of `writers` tasks each calling make() then ledger.append() until `entries`
    entries are in; with `probe`, also one more writer appending probe()'s single entry at a
    time meanwhile, and its ms from each call until durable (its entries not counted)."""
    left = [entries]
    waits: list[float] = []

    async def writer() -> None:
        while left[0] > 0:
            made = make()
            records = made if isinstance(made, list) else await made
            left[0] -= len(records)
            await ledger.append(records)

    async def prober(make_one: Callable[[], list[LeafRecord]]) -> None:
        while left[0] > 0:
            records = make_one()
            began = time.perf_counter()
            await ledger.append(records)
            waits.append((time.perf_counter() - began) * 1e3)

    started = time.perf_counter()
    probing = asyncio.create_task(prober(probe)) if probe is not None else None
    await asyncio.gather(*(writer() for _ in range(writers)))
    rate = (entries - left[0]) / (time.perf_counter() - started)
    if probing is not None:
        await probing
    return rate, waits


async def lone_writer_ms(ledger: Ledger, builder: Builder, count: int) -> list[float]:
    records = builder.transfer(count)
    times = []
    for r in records:
        started = time.perf_counter()
        await ledger.append([r])
        times.append((time.perf_counter() - started) * 1e3)
    return times


async def proof_ms(ledger: Ledger, size: int, count: int) -> list[float]:
    rnd = random.Random(2)
    times = []
    for _ in range(count):
        index = rnd.randrange(size)
        started = time.perf_counter()
        await ledger.inclusion_proof(index, size)
        times.append((time.perf_counter() - started) * 1e3)
    return times


def percentiles(ms: Sequence[float]) -> str:
    cuts = statistics.quantiles(ms, n=100, method="inclusive")
    return f"p50 {cuts[49]:6.2f} ms  p99 {cuts[98]:6.2f} ms  max {max(ms):6.2f} ms"


class Counted:
    """The store, counting ledger_append transactions and their entries."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.transactions = 0
        self.entries = 0

    async def ledger_append(
        self, records: Sequence[LeafRecord], outbox: Sequence[SideWrite] = ()
    ) -> int:
        self.transactions += 1
        self.entries += len(records)
        return await self.inner.ledger_append(records, outbox)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@asynccontextmanager
async def fresh_ledger(
    backend: str, folder: Path, url: str, name: str
) -> AsyncIterator[tuple[Ledger, Counted, str]]:
    """A started Ledger over a new, empty store (SQLite file `name` in folder, or a new
    PostgreSQL schema), stopped and removed afterwards."""
    schema = ""
    if backend == "sqlite":
        store: Store = await SqliteStore.open(folder / f"{name}.sqlite3")
    else:
        schema = f"bench_{uuid.uuid4().hex}"
        store = await PostgresStore.open(url, schema=schema)
    counted = Counted(store)
    ledger = make_ledger(counted, folder)  # type: ignore[arg-type]  # a delegating proxy
    try:
        await ledger.start()
        yield ledger, counted, schema
        await ledger.stop()
    finally:
        if schema:
            await store.execute_sql(f'DROP SCHEMA "{schema}" CASCADE')
        await store.close()


async def run_backend(
    backend: str, args: argparse.Namespace, folder: Path, builder: Builder
) -> dict[str, Any]:
    """Each throughput phase on an empty log, as the floor; (c) and (d) after (b)."""
    out: dict[str, Any] = {}
    url = args.database_url
    async with fresh_ledger(backend, folder, url, "capacity") as (ledger, _, schema):
        if schema:
            rows = floor_rows(builder, args.entries, sqlite=False)
            out["floor"] = await floor_postgres(url, schema, rows)
        calls = [builder.transfer(args.per_call) for _ in range(args.entries // args.per_call)]
        made = iter(calls)
        out["capacity"], _ = await gateway_rate(
            ledger, lambda: next(made), args.entries, args.writers
        )
    async with fresh_ledger(backend, folder, url, "store") as (_, counted, _):
        records = [r for call in calls for r in call]
        out["per_append"] = args.writers * args.per_call
        out["store"] = await store_rate(counted.inner, records, out["per_append"])
    async with fresh_ledger(backend, folder, url, "gateway") as (ledger, counted, _):
        out["e2e"], out["loaded"] = await end_to_end(ledger, builder, args)
        out["batch"] = counted.entries / counted.transactions
        out["lone"] = await lone_writer_ms(ledger, builder, args.lone)
        out["size"] = await counted.inner.ledger_size()
        out["proofs"] = await proof_ms(ledger, out["size"], args.proofs)
    return out


async def store_rate(store: Store, records: Sequence[LeafRecord], per_append: int) -> float:
    """Entries/s of `LedgerStore.ledger_append` alone: the same prebuilt records, appended
    `per_append` at a time one after the other (the transactions group commit makes of
    `--writers` x `--per-call`), without the service."""
    started = time.perf_counter()
    for offset in range(0, len(records), per_append):
        await store.ledger_append(records[offset : offset + per_append])
    return len(records) / (time.perf_counter() - started)


async def end_to_end(
    ledger: Ledger, builder: Builder, args: argparse.Namespace
) -> tuple[float, list[float]]:
    """(b): entries built by the writers on the event loop, or with --build-processes in a
    pool of processes; entries/s, and (c) a single writer's ms until durable meanwhile."""
    if not args.build_processes:
        builder.draw(args.entries)
        return await gateway_rate(
            ledger,
            lambda: builder.transfer(args.per_call),
            args.entries,
            args.writers,
            probe=lambda: builder.transfer(1),
        )
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(
        args.build_processes, initializer=_start_builder, initargs=(args.ids, 2)
    ) as pool:
        return await gateway_rate(
            ledger,
            lambda: loop.run_in_executor(pool, _build, args.per_call),
            args.entries,
            args.writers,
        )


def report(backend: str, out: dict[str, Any], target: int) -> None:
    floor = out["floor"]
    print(f"{backend}")
    print(f"  (a) floor                      {floor:>9,.0f} rows/s     plain table, 1,000 a tx")
    print(
        f"  (b) gateway, built by writers  {out['e2e']:>9,.0f} entries/s  "
        f"{out['e2e'] / floor:4.2f} x floor  (target {target:,}; "
        f"{out['batch']:,.0f} entries a transaction)"
    )
    print(
        f"      gateway, records prebuilt  {out['capacity']:>9,.0f} entries/s  "
        f"{out['capacity'] / floor:4.2f} x floor"
    )
    print(
        f"      store alone, prebuilt      {out['store']:>9,.0f} entries/s  "
        f"{out['store'] / floor:4.2f} x floor  (ledger_append, {out['per_append']:,} a call)"
    )
    print(f"  (c) lone writer, durable       {percentiles(out['lone'])}  (target 10 ms)")
    if out["loaded"]:
        print(f"      one writer during (b)      {percentiles(out['loaded'])}")
    print(
        f"  (d) inclusion proof            {percentiles(out['proofs'])}  "
        f"(size {out['size']:,}; target p99 < 2 ms)"
    )


def build_cost(
    contract: PartnerContract, count: int = 20_000, rounds: int = 3
) -> tuple[float, float, float, bool, int]:
    """µs an entry of TransferEntries alone, the people drawn beforehand and the records kept
    as a planner keeps them (best of `rounds`): on the bulk path (`shape` once, then
    `record_shaped`), and by `record` with a Decision per person (made beforehand, sharing the
    decision's values as DecisionCache's copies do); µs for the general path's to_record
    alone (what the template replaces); whether RFC 8785's fast path applies; the leaf's
    size."""
    builder = Builder(contract)
    people = builder.people(count)
    decision, evidence = builder.decision, builder.decision.evidence
    decisions = [decision.model_copy(update={"subject_id": subject}) for subject, _, _ in people]

    def shaped() -> list[LeafRecord]:
        entries = TransferEntries(
            contract=contract, outcome=Outcome.ALLOWED, transfer_id=random_uuid(), time=NOW
        )
        shape, record = entries.shape(decision), entries.record_shaped
        return [
            record(shape, subject_id=s, subject_key=k, evidence=evidence, payload_sha256=sha)
            for s, k, sha in people
        ]

    def by_decision() -> list[LeafRecord]:
        entries = TransferEntries(
            contract=contract, outcome=Outcome.ALLOWED, transfer_id=random_uuid(), time=NOW
        )
        record = entries.record
        return [
            record(d, subject_key=k, payload_sha256=sha)
            for d, (_, k, sha) in zip(decisions, people, strict=True)
        ]

    best = {shaped: float("inf"), by_decision: float("inf")}
    for _ in range(rounds):
        for build in best:
            started = time.perf_counter()
            records = build()
            best[build] = min(best[build], time.perf_counter() - started)
            del records
    leaf_bytes = len(shaped()[0].leaf)
    entry = provision_entry(
        decision=decision,
        contract=builder.contract,
        outcome=Outcome.ALLOWED,
        transfer_id="t",
        entry_id="e",
        time=NOW,
        subject_key="k",
    )
    started = time.perf_counter()
    for _ in range(2_000):
        to_record(entry)
    alone = (time.perf_counter() - started) / 2_000 * 1e6
    shaped_us, record_us = (best[build] / count * 1e6 for build in (shaped, by_decision))
    return shaped_us, record_us, alone, fast_path_applies(entry), leaf_bytes


async def postgres_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--writers", type=int, default=50)
    parser.add_argument("--per-call", type=int, default=10)
    parser.add_argument("--ids", choices=sorted(IDS), default="uuid7", help="transfer_id format")
    parser.add_argument(
        "--build-processes", type=int, default=0, help="build entries in N processes (0: loop)"
    )
    parser.add_argument("--lone", type=int, default=500, help="lone-writer appends")
    parser.add_argument("--proofs", type=int, default=2_000)
    parser.add_argument(
        "--database-url",
        default=os.environ.get("GATEWAY_TEST_DATABASE_URL", ""),
        help="PostgreSQL URL (default: $GATEWAY_TEST_DATABASE_URL)",
    )
    args = parser.parse_args()
    backends = ["sqlite", "postgres"] if args.backend == "both" else [args.backend]
    if "postgres" in backends and not args.database_url:
        parser.error("postgres needs --database-url or GATEWAY_TEST_DATABASE_URL")
    contract = load_contract(REPO / "partners" / "google-customer-match.toml", NOW.date())
    builder = Builder(contract, args.ids)
    shaped_us, record_us, alone_us, fast, leaf_bytes = build_cost(contract)
    versions = f"SQLite {sqlite3.sqlite_version}"
    if "postgres" in backends:
        versions += f", PostgreSQL {asyncio.run(postgres_version(args.database_url))}"
    print(
        f"machine  {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, {versions}"
    )
    print(
        f"load     {args.entries:,} entries a phase, {args.writers} writers, "
        f"{args.per_call} entries an append call, {args.ids} ids, leaf {leaf_bytes:,} bytes, "
        f"built {f'in {args.build_processes} processes' if args.build_processes else 'on the loop'}"
    )
    print(
        f"build    {shaped_us:.1f} µs an entry (TransferEntries.record_shaped; record() with a "
        f"Decision per person {record_us:.1f} µs; the general path's to_record alone "
        f"{alone_us:.1f} µs, RFC 8785 fast path {'taken' if fast else 'NOT taken'})"
    )
    targets = {"sqlite": 50_000, "postgres": 30_000}
    for backend in backends:
        with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
            folder = Path(tmp)
            floor = None
            if backend == "sqlite":
                floor = floor_sqlite(
                    folder / "floor.sqlite3", floor_rows(builder, args.entries, sqlite=True)
                )
            out = asyncio.run(run_backend(backend, args, folder, builder))
            if floor is not None:
                out["floor"] = floor
            report(backend, out, targets[backend])
    return 0


if __name__ == "__main__":
    sys.exit(main())
