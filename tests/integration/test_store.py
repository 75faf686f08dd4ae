"""The Store contract, run against SQLite and PostgreSQL alike (the `store` fixture)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from gateway.delivery.outbox import JobRejections, NewJob, Rejection
from gateway.errors import ConfigError, StorageError
from gateway.models import (
    ClientRecord,
    ConsentAction,
    ConsentEvent,
    Discontinuance,
    Role,
)
from gateway.storage import ConsentRow, Store
from gateway.storage.factory import open_store
from gateway.storage.migrations import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS
from gateway.storage.postgres import PostgresStore
from gateway.storage.sqlite import SqliteStore
from tests.conftest import open_test_store, pg_test_url

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
JST = timezone(timedelta(hours=9))


def grant(subject: str, purpose: str, at: datetime, notice: str = "pn-1") -> ConsentEvent:
    return ConsentEvent(
        subject_id=subject,
        purpose=purpose,
        action=ConsentAction.GRANT,
        effective_at=at,
        notice_version=notice,
        channel="web",
        foreign_disclosure_version="us-1",
        recorded_at=NOW,
        recorded_by="admin-1",
    )


def withdraw(subject: str, purpose: str, at: datetime) -> ConsentEvent:
    return ConsentEvent(
        subject_id=subject,
        purpose=purpose,
        action=ConsentAction.WITHDRAW,
        effective_at=at,
        recorded_at=NOW,
        recorded_by="admin-1",
    )


def client(client_id: str, created: datetime = NOW, **kw: Any) -> ClientRecord:
    fields: dict[str, Any] = {
        "name": f"name of {client_id}",
        "role": Role.SENDER,
        "partners": ("google-customer-match",),
        "key_sha256": client_id.encode().hex().ljust(64, "0"),
        "created_at": created,
    }
    return ClientRecord(client_id=client_id, **(fields | kw))


def all_versions(store: Store) -> list[int]:
    known = SQLITE_MIGRATIONS if isinstance(store, SqliteStore) else POSTGRES_MIGRATIONS
    return [m.version for m in known]


def backend(store: Store) -> str:
    return "sqlite" if isinstance(store, SqliteStore) else "postgres"


async def raw_sql(store: Store, sql: str) -> list[Any]:
    assert isinstance(store, SqliteStore | PostgresStore)
    return list(await store.execute_sql(sql))


# consents


async def test_history_is_everything_in_recorded_order(store: Store) -> None:
    events = [
        grant("m-1", "ads", NOW - timedelta(days=3)),
        withdraw("m-1", "ads", NOW - timedelta(days=1)),
        grant("m-2", "ads", NOW - timedelta(days=2)),
    ]
    await store.append_consent_events(events)
    history = await store.consent_history("m-1")
    assert [e.action for e in history] == [ConsentAction.GRANT, ConsentAction.WITHDRAW]
    assert history[0].seq is not None
    assert history[1].seq is not None
    assert history[0].seq < history[1].seq
    assert history[0].model_copy(update={"seq": None}) == events[0]
    assert await store.consent_history("nobody") == []


async def test_current_state_is_latest_effective_at_not_latest_recorded(store: Store) -> None:
    # Recorded second, but effective earlier: the earlier grant does not override the withdrawal.
    await store.append_consent_events([withdraw("m-1", "ads", NOW - timedelta(days=1))])
    await store.append_consent_events([grant("m-1", "ads", NOW - timedelta(days=5))])
    state = (await store.subject_states(["m-1"]))["m-1"]
    assert state.consents["ads"].action is ConsentAction.WITHDRAW


async def test_equal_effective_at_is_won_by_the_later_seq(store: Store) -> None:
    at = NOW - timedelta(hours=1)
    await store.append_consent_events([grant("m-1", "ads", at, "pn-1"), withdraw("m-1", "ads", at)])
    await store.append_consent_events([grant("m-1", "fraud", at, "pn-1")])
    await store.append_consent_events([grant("m-1", "fraud", at, "pn-2")])
    state = (await store.subject_states(["m-1"]))["m-1"]
    assert state.consents["ads"].action is ConsentAction.WITHDRAW
    assert state.consents["fraud"].notice_version == "pn-2"


async def test_timestamps_round_trip_as_aware_utc(store: Store) -> None:
    at = datetime(2026, 4, 1, 9, 30, 15, 123456, tzinfo=JST)
    await store.append_consent_events([grant("m-1", "ads", at)])
    (event,) = await store.consent_history("m-1")
    assert event.effective_at == at
    assert event.effective_at.utcoffset() == timedelta(0)
    assert event.recorded_at == NOW


async def test_subject_states_for_thousands_of_ids_and_unknown_ones(store: Store) -> None:
    ids = [f"m-{i:05d}" for i in range(3000)]
    rows: list[ConsentRow] = [
        (s, "ads", "grant", NOW - timedelta(days=2), "pn-1", "web", None) for s in ids
    ]
    rows += [(s, "ads", "withdraw", NOW - timedelta(days=1), None, None, None) for s in ids[::2]]
    await store.append_consent_rows(rows, recorded_at=NOW, recorded_by="import:admin-1")
    asked = [*ids, "unknown-1", "unknown-2", ids[0]]  # a duplicate is answered once
    states = await store.subject_states(asked)
    assert set(states) == set(asked)
    assert states["m-00000"].consents["ads"].action is ConsentAction.WITHDRAW
    assert states["m-00001"].consents["ads"].action is ConsentAction.GRANT
    assert states["m-00001"].consents["ads"].recorded_by == "import:admin-1"
    assert states["unknown-1"].consents == {}
    assert states["unknown-1"].discontinuances == ()
    assert await store.subject_states([]) == {}


async def test_bulk_rows_refuse_naive_datetimes(store: Store) -> None:
    naive = datetime(2026, 1, 1)  # the point of the test
    with pytest.raises(ValueError, match="naive"):
        await store.append_consent_rows(
            [("m-1", "ads", "grant", naive, "pn", "web", None)],
            recorded_at=NOW,
            recorded_by="x",
        )
    assert await store.consent_history("m-1") == []


async def test_a_grant_without_evidence_is_refused_by_the_database(store: Store) -> None:
    with pytest.raises(StorageError):
        await store.append_consent_rows(
            [("m-1", "ads", "grant", NOW, None, None, None)], recorded_at=NOW, recorded_by="x"
        )


# discontinuances


async def test_discontinuances_for_all_and_for_named_partners(store: Store) -> None:
    everyone = Discontinuance(
        subject_id="m-1", partners=None, reason="phoned", requested_at=NOW, recorded_by="a"
    )
    named = everyone.model_copy(update={"partners": ("google", "bank"), "reason": "letter"})
    first = await store.append_discontinuance(everyone)
    second = await store.append_discontinuance(named)
    assert first.seq is not None
    assert second.seq is not None
    assert first.seq < second.seq
    state = (await store.subject_states(["m-1", "m-2"]))["m-1"]
    assert state.discontinuances == (first, second)
    assert state.discontinuances[0].covers("anyone")
    assert state.discontinuances[1].covers("bank")
    assert not state.discontinuances[1].covers("x")
    assert (await store.subject_states(["m-2"]))["m-2"].discontinuances == ()


# clients


async def test_clients_create_get_list_revoke(store: Store) -> None:
    a = client("c-a", NOW - timedelta(days=1), role=Role.ADMIN, partners=())
    b = client("c-b")
    await store.create_client(b)
    await store.create_client(a)
    assert await store.get_client("c-b") == b
    assert await store.get_client("nope") is None
    assert await store.list_clients() == [a, b]  # oldest first
    assert await store.revoke_client("c-b", NOW + timedelta(hours=1)) is True
    assert await store.revoke_client("c-b", NOW + timedelta(hours=2)) is False  # already
    assert await store.revoke_client("nope", NOW) is False
    revoked = await store.get_client("c-b")
    assert revoked is not None
    assert revoked.revoked_at == NOW + timedelta(hours=1)


async def test_a_duplicate_client_is_a_storage_error(store: Store) -> None:
    await store.create_client(client("c-a"))
    with pytest.raises(StorageError) as caught:
        await store.create_client(client("c-a", name="other"))
    assert isinstance(caught.value.__cause__, sqlite3.Error | asyncpg.PostgresError)


# append-only


@pytest.mark.parametrize("table", ["consent_events", "discontinuances"])
@pytest.mark.parametrize("statement", ["UPDATE {t} SET subject_id = 'x'", "DELETE FROM {t}"])
async def test_history_tables_refuse_update_and_delete(
    store: Store, table: str, statement: str
) -> None:
    await store.append_consent_events([grant("m-1", "ads", NOW)])
    await store.append_discontinuance(
        Discontinuance(
            subject_id="m-1", partners=None, reason="r", requested_at=NOW, recorded_by="a"
        )
    )
    with pytest.raises(StorageError, match="append-only") as caught:
        await raw_sql(store, statement.format(t=table))
    assert caught.value.__cause__ is not None  # raised from the driver's exception
    assert len(await raw_sql(store, f"SELECT seq FROM {table}")) == 1


async def test_sqlite_replace_cannot_overwrite_history(store: Store) -> None:
    if backend(store) != "sqlite":
        pytest.skip("INSERT OR REPLACE is SQLite's")
    await store.append_consent_events([grant("m-1", "ads", NOW)])
    with pytest.raises(StorageError, match="append-only"):
        await raw_sql(
            store,
            "INSERT OR REPLACE INTO consent_events (seq, subject_id, purpose, action,"
            " effective_at, recorded_at, recorded_by)"
            " VALUES (1, 'm-1', 'ads', 'withdraw', 0, 0, 'x')",
        )


async def test_postgres_truncate_is_refused(store: Store) -> None:
    if backend(store) != "postgres":
        pytest.skip("TRUNCATE is PostgreSQL's")
    with pytest.raises(StorageError, match="append-only"):
        await raw_sql(store, "TRUNCATE consent_events")


# migrations


async def test_migrations_are_recorded_once_and_reopening_is_idempotent(
    store: Store, tmp_path: Path
) -> None:
    await store.append_consent_events([grant("m-1", "ads", NOW)])
    sql = "SELECT version FROM schema_migrations ORDER BY version"
    versions = [r[0] for r in await raw_sql(store, sql)]
    assert versions == all_versions(store)
    if isinstance(store, SqliteStore):
        again: Store = await open_test_store("sqlite", tmp_path)
    else:
        schema = (await raw_sql(store, "SELECT current_schema()"))[0][0]
        again = await open_test_store("postgres", tmp_path, schema)
    try:
        assert len(await again.consent_history("m-1")) == 1
        assert [r[0] for r in await raw_sql(again, sql)] == versions
    finally:
        await again.close()


async def test_a_newer_schema_is_refused(store: Store, tmp_path: Path) -> None:
    await raw_sql(
        store,
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES "
        + ("(999, 'future', 0)" if backend(store) == "sqlite" else "(999, 'future', now())"),
    )
    schema = (
        None
        if isinstance(store, SqliteStore)
        else (await raw_sql(store, "SELECT current_schema()"))[0][0]
    )
    with pytest.raises(StorageError, match="newer than this gateway"):
        await open_test_store(backend(store), tmp_path, schema)


@pytest.mark.postgres
async def test_two_instances_open_one_fresh_schema_at_once(
    pg_url: str, pg_schemas: Callable[[], str]
) -> None:
    schema = pg_schemas()
    stores = await asyncio.gather(*(PostgresStore.open(pg_url, schema=schema) for _ in range(4)))
    try:
        await stores[0].append_consent_events([grant("m-1", "ads", NOW)])
        assert len(await stores[3].consent_history("m-1")) == 1
        applied = await stores[1].execute_sql("SELECT version FROM schema_migrations")
        assert len(applied) == len(POSTGRES_MIGRATIONS)
    finally:
        await asyncio.gather(*(s.close() for s in stores))


@pytest.mark.postgres
async def test_a_bad_schema_name_is_a_config_error(pg_url: str) -> None:
    with pytest.raises(ConfigError):
        await PostgresStore.open(pg_url, schema='x"; DROP TABLE clients; --')


async def test_an_unreachable_database_is_a_storage_error() -> None:
    with pytest.raises(StorageError) as caught:
        await PostgresStore.open("postgresql://nobody@127.0.0.1:1/none")
    assert isinstance(caught.value.__cause__, OSError)


# SQLite specifics


async def test_sqlite_creates_folder_and_file_with_durable_pragmas(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "gateway.sqlite3"
    store = await SqliteStore.open(path)
    try:
        assert path.is_file()
        assert (await store.execute_sql("PRAGMA journal_mode"))[0][0] == "wal"
        assert (await store.execute_sql("PRAGMA synchronous"))[0][0] == 2  # FULL
        assert (await store.execute_sql("PRAGMA foreign_keys"))[0][0] == 1
    finally:
        await store.close()
    with pytest.raises(StorageError, match="closed"):
        await store.consent_history("m-1")


async def test_sqlite_unusable_path_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StorageError):
        await SqliteStore.open(tmp_path / "file" / "gateway.sqlite3")


async def test_sqlite_work_runs_off_the_event_loop_thread(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "gateway.sqlite3")
    try:
        # A slow statement on the worker leaves the loop free to run other tasks meanwhile.
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        await store.execute_sql(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000)"
            " SELECT count(*) FROM n"
        )
        task.cancel()
        assert ticks > 5
    finally:
        await store.close()


async def test_sqlite_reads_do_not_queue_behind_a_write_under_way(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "gateway.sqlite3")
    try:
        await store.append_consent_events([grant("m-1", "ads", NOW)])
        writing = asyncio.create_task(
            store.execute_sql(  # holds the write lock and the writer's thread for a while
                "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n"
                " WHERE i < 3000000) SELECT count(*) FROM n"
            )
        )
        await asyncio.sleep(0.01)  # the write is under way
        states = await store.subject_states(["m-1"])  # a lookup, on the loop's connection
        many = await store.subject_states([f"m-{n}" for n in range(1, 50)])  # a scan
        client_row = await store.get_client("nobody")
        assert not writing.done()  # answered while the write still ran: other connections
        assert states["m-1"].consents["ads"].notice_version == "pn-1"
        assert many["m-1"] == states["m-1"]
        assert many["m-49"].consents == {}
        assert client_row is None
        await writing
    finally:
        await store.close()


async def test_sqlite_reads_see_what_a_finished_write_committed(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "gateway.sqlite3")
    try:
        for n in range(20):  # each write, once awaited, is what the next read sees
            await store.append_consent_events([grant("m-1", "ads", NOW, notice=f"pn-{n}")])
            states = await store.subject_states(["m-1"])
            assert states["m-1"].consents["ads"].notice_version == f"pn-{n}"
    finally:
        await store.close()


async def test_sqlite_lookups_run_on_the_loop_and_a_busy_one_goes_to_the_reader(
    tmp_path: Path,
) -> None:
    store = await SqliteStore.open(tmp_path / "gateway.sqlite3")
    threads: list[str] = []

    def lookup(conn: sqlite3.Connection) -> int:
        threads.append(threading.current_thread().name)
        if len(threads) == 1:  # what SQLite raises when a read would wait for a lock
            busy = sqlite3.OperationalError("database is locked")
            busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
            raise busy
        return int(conn.execute("SELECT 7").fetchone()[0])

    def broken(conn: sqlite3.Connection) -> None:
        threads.append(threading.current_thread().name)
        conn.execute("SELECT * FROM no_such_table")

    try:
        assert await store._lookup(lookup) == 7
        assert threads == [threading.current_thread().name, "sqlite-reader_0"]
        threads.clear()
        with pytest.raises(StorageError, match="no_such_table"):  # not busy: no second try
            await store._lookup(broken)
        assert threads == [threading.current_thread().name]
    finally:
        await store.close()


# jobs: rejections


def new_job(job_id: str) -> NewJob:
    return NewJob(
        job_id=job_id, client_id="c-1", idempotency_key=job_id, request_sha256="0" * 64,
        kind="customer_match", partner_id="google-customer-match", destination="default",
        purpose="ad_customer_match", legal_basis="consent", transfer_id=f"t-{job_id}",
        created_at=NOW,
    )  # fmt: skip


def rejection(line: int, code: str, field: str | None = None) -> Rejection:
    return Rejection(line, f"s-{line}", code, field, f"{code} ({field})")


async def all_rejections(
    store: Store, job_id: str, limit: int
) -> list[tuple[tuple[int, int], Rejection]]:
    """Every row of the job, page by page of `limit`, each page after the last key."""
    rows = await store.job_rejections(job_id, limit=limit)
    out = list(rows)
    while len(rows) == limit:
        rows = await store.job_rejections(job_id, after=rows[-1][0], limit=limit)
        out += rows
    return out


async def test_a_lines_rejections_are_all_kept_in_order_and_paged_whole(store: Store) -> None:
    await store.create_job(new_job("j-1"))
    await store.create_job(new_job("j-2"))
    made = [
        rejection(1, "empty", "given_name"),
        rejection(1, "empty", "family_name"),  # the same code again on the line
        rejection(1, "address_incomplete", "region_code"),
        rejection(2, "invalid_hash", "email_sha256"),
        rejection(2, "invalid_hash", "phone_sha256"),
        rejection(5, "unknown_field"),
        *(rejection(n, code) for n in range(6, 40) for code in ("b", "a")),
    ]
    await store.apply_side_writes([JobRejections("j-1", tuple(made[:5]))])
    await store.apply_side_writes([JobRejections("j-1", tuple(made[5:]))])
    await store.apply_side_writes([JobRejections("j-2", (rejection(1, "x"),))])
    for limit in (1, 2, 4, 5, 7, 1000):  # page ends inside lines and between them
        rows = await all_rejections(store, "j-1", limit)
        assert [r for _, r in rows] == made
        ordinals = [0, 1, 2, 0, 1, 0, *([0, 1] * 34)]
        assert [key for key, _ in rows] == [
            (r.line, n) for r, n in zip(made, ordinals, strict=True)
        ]
    assert [r for _, r in await store.job_rejections("j-2", limit=10)] == [rejection(1, "x")]


async def test_rejections_written_again_are_not_doubled(store: Store) -> None:
    await store.create_job(new_job("j-1"))
    rows = (rejection(3, "empty", "given_name"), rejection(3, "empty", "family_name"))
    await store.apply_side_writes([JobRejections("j-1", rows)])
    await store.apply_side_writes([JobRejections("j-1", rows)])
    assert [r for _, r in await store.job_rejections("j-1", limit=10)] == list(rows)


# factory


async def test_open_store_chooses_the_backend(tmp_path: Path) -> None:
    store = await open_store(database_url="", sqlite_path=tmp_path / "g.sqlite3")
    assert isinstance(store, SqliteStore)
    await store.close()
    with pytest.raises(ConfigError, match="unsupported scheme 'mysql'") as caught:
        await open_store(database_url="mysql://u:secret@h/db", sqlite_path=tmp_path / "x")
    assert "secret" not in str(caught.value)


@pytest.mark.postgres
@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_open_store_takes_both_postgres_schemes(
    pg_url: str, pg_schema: str, scheme: str
) -> None:
    # Without a schema argument the store migrates the URL's current schema: make that a
    # fresh one (asyncpg passes unknown URL parameters on as server settings).
    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f'CREATE SCHEMA "{pg_schema}"')
    finally:
        await conn.close()
    sep = "&" if "?" in pg_url else "?"
    url = scheme + pg_url[pg_url.index(":") :] + f"{sep}search_path={pg_schema}"
    store = await open_store(database_url=url, sqlite_path=Path("unused"))
    try:
        assert isinstance(store, PostgresStore)
        assert (await store.execute_sql("SELECT current_schema()"))[0][0] == pg_schema
        applied = await store.execute_sql("SELECT version FROM schema_migrations")
        assert len(applied) == len(POSTGRES_MIGRATIONS)
    finally:
        await store.close()


async def test_exclusive_is_held_by_one_at_a_time(store: Store) -> None:
    """A second holder of one job's feeding lock waits; another job's does not."""
    order: list[str] = []

    async def feed(name: str, job_id: str, hold_s: float) -> None:
        async with store.exclusive(job_id):
            order.append(f"{name} in")
            await asyncio.sleep(hold_s)
            order.append(f"{name} out")

    first = asyncio.create_task(feed("a", "job-1", 0.3))
    await asyncio.sleep(0.05)
    await asyncio.gather(first, feed("b", "job-1", 0), feed("c", "job-2", 0))
    assert order.index("b in") > order.index("a out")  # b waited for a
    assert order.index("c in") < order.index("a out")  # another job did not


async def test_exclusive_holds_across_postgres_instances(pg_schema: str) -> None:
    """Two gateways on one PostgreSQL database: the advisory lock, not this process's."""
    one = await PostgresStore.open(pg_test_url(), schema=pg_schema)
    other = await PostgresStore.open(pg_test_url(), schema=pg_schema)
    try:
        second = other.exclusive("job-1")
        async with one.exclusive("job-1"):
            waiting = asyncio.create_task(second.__aenter__())
            await asyncio.sleep(0.3)
            assert not waiting.done()
        async with asyncio.timeout(5):
            await waiting
        await second.__aexit__(None, None, None)
    finally:
        await one.close()
        await other.close()
