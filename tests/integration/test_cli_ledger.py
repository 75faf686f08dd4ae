"""`gateway ledger verify`, `export` and `verify --offline` as processes, against a SQLite log
that the test then tampers with directly (triggers dropped first, as an attacker would)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import struct
import uuid
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.contracts import PartnerContract, load_contract
from gateway.keyring import init_keyring
from gateway.ledger.checkpoint import checkpoint_body, sign_note
from gateway.ledger.entries import Outcome, RecordingMethod, provision_entry, to_record
from gateway.ledger.service import Ledger
from gateway.ledger.store import LeafRecord
from gateway.models import LegalBasis, SubjectState
from gateway.policy import ProvisionItem, decide
from gateway.settings import Settings
from gateway.storage.sqlite import SqliteStore
from tests.integration.conftest import NOW, REPO
from tests.integration.ledger_fixtures import record_transfer
from tests.integration.processes import gateway_env, run_gateway


async def _build_log(settings: Settings) -> None:
    store = await SqliteStore.open(settings.sqlite_path)
    ring, _ = init_keyring(settings.keys_dir, NOW)
    ledger = Ledger(store=store, keyring=ring, origin=settings.log_origin, clock=lambda: NOW)
    contract = load_contract(REPO / "partners" / "google-customer-match.toml", NOW.date())
    people = [SubjectState(subject_id=f"m-{i}") for i in range(10)]
    try:
        await ledger.start()
        for size in (3, 4, 3):
            await record_transfer(ledger, contract, people[:size], now=NOW)
            await ledger.checkpoint()
        await record_transfer(ledger, contract, people[:2], now=NOW)  # after the last checkpoint
        await ledger.stop()  # the final checkpoint covers all 12
    finally:
        await store.close()


@pytest.fixture
def log_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    env = gateway_env(tmp_path)
    settings = Settings.from_env(env)
    asyncio.run(_build_log(settings))
    return env, settings.sqlite_path


def _tamper(db: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    conn = sqlite3.connect(db)
    try:
        triggers = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")
        ]
        for name in triggers:
            conn.execute(f"DROP TRIGGER {name}")
        for sql, params in statements:
            conn.execute(sql, params)
        conn.commit()
    finally:
        conn.close()


def test_an_intact_log_verifies(log_env: tuple[dict[str, str], Path]) -> None:
    env, _ = log_env
    result = run_gateway("ledger", "verify", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 12 entries")


def _chunk(db: Path, first: int) -> list[bytes]:
    """The leaves of the chunk starting at `first`, decoded as docs/ledger.md describes: zlib
    of the leaves, each after its length as a 4-byte big-endian integer."""
    conn = sqlite3.connect(db)
    try:
        row = conn.execute(
            "SELECT count, codec, data FROM ledger_chunks WHERE first_idx = ?", (first,)
        ).fetchone()
    finally:
        conn.close()
    count, codec, data = row
    assert codec == "zlib"
    raw, leaves = zlib.decompress(data), []
    while raw:
        size = struct.unpack(">I", raw[:4])[0]
        leaves.append(raw[4 : 4 + size])
        raw = raw[4 + size :]
    assert len(leaves) == count
    return leaves


def _packed(leaves: list[bytes]) -> bytes:
    return zlib.compress(b"".join(struct.pack(">I", len(x)) + x for x in leaves), 1)


def test_a_changed_byte_is_named(log_env: tuple[dict[str, str], Path]) -> None:
    env, db = log_env
    leaves = _chunk(db, 3)  # the second transfer: entries 3 to 6
    leaves[2] = leaves[2].replace(b'"m-2"', b'"m-9"')  # entry 5
    _tamper(db, ("UPDATE ledger_chunks SET data = ? WHERE first_idx = 3", (_packed(leaves),)))
    result = run_gateway("ledger", "verify", env=env)
    assert result.returncode == 1
    assert "entry 5: content does not match its leaf hash" in result.stderr


def test_a_deleted_row_is_named(log_env: tuple[dict[str, str], Path]) -> None:
    env, db = log_env
    _tamper(
        db,
        ("DELETE FROM ledger_chunks WHERE first_idx = 3", ()),  # entries 3 to 6
        ("DELETE FROM ledger_leaves WHERE idx = 4", ()),
    )
    result = run_gateway("ledger", "verify", env=env)
    assert result.returncode == 1
    assert "entry 3: content purged before its retention could end" in result.stderr
    # Even once the content could have gone lawfully, the leaf hash never may.
    later = run_gateway("ledger", "verify", "--as-of", "2030-01-01", env=env)
    assert later.returncode == 1
    assert "entry 4: missing" in later.stderr


def test_a_reordered_pair_is_caught(log_env: tuple[dict[str, str], Path]) -> None:
    env, db = log_env
    leaves = _chunk(db, 0)  # the first transfer: entries 0 to 2
    leaves[1], leaves[2] = leaves[2], leaves[1]
    swaps = [
        ("UPDATE ledger_chunks SET data = ? WHERE first_idx = 0", (_packed(leaves),)),
        ("UPDATE ledger_leaves SET idx = -1 WHERE idx = 1", ()),
        ("UPDATE ledger_leaves SET idx = 1 WHERE idx = 2", ()),
        ("UPDATE ledger_leaves SET idx = 2 WHERE idx = -1", ()),
    ]
    _tamper(db, *swaps)
    result = run_gateway("ledger", "verify", env=env)
    assert result.returncode == 1
    assert "checkpoint 3: root does not match" in result.stderr


def test_a_forged_checkpoint_is_caught(
    log_env: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, db = log_env
    settings = Settings.from_env(env)
    forged_root = bytes(32)
    note = sign_note(
        checkpoint_body(settings.log_origin, 7, forged_root),
        settings.log_origin,
        Ed25519PrivateKey.generate(),
    )
    _tamper(
        db, ("UPDATE ledger_checkpoints SET note = ?, root = ? WHERE size = 7", (note, forged_root))
    )
    result = run_gateway("ledger", "verify", env=env)
    assert result.returncode == 1
    assert "checkpoint 7: signed note does not verify" in result.stderr


def test_verify_never_creates_the_key_it_trusts(tmp_path: Path) -> None:
    env = gateway_env(tmp_path)
    result = run_gateway("ledger", "verify", env=env)
    assert result.returncode == 2
    assert "no log-signing key" in result.stderr
    assert not list((tmp_path / "keys").glob("*.key"))


def test_export_then_offline_verify_and_tamper(
    log_env: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, _ = log_env
    out = tmp_path / "export"
    exported = run_gateway("ledger", "export", str(out), env=env)
    assert exported.returncode == 0, exported.stderr
    offline_env = {k: v for k, v in env.items() if k != "GATEWAY_HOME"}
    offline_env["GATEWAY_HOME"] = str(tmp_path / "nowhere")  # no database needed
    ok = run_gateway("ledger", "verify", "--offline", str(out), env=offline_env)
    assert ok.returncode == 0, ok.stderr
    assert "12 entries" in ok.stdout
    assert not (tmp_path / "nowhere").exists()

    lines = (out / "entries.jsonl").read_text().splitlines()
    row = json.loads(lines[8])
    row["leaf_hash"] = row["leaf_hash"][:-4] + (
        "AAA=" if row["leaf_hash"][-4:] != "AAA=" else "BBB="
    )
    lines[8] = json.dumps(row)
    (out / "entries.jsonl").write_text("\n".join(lines) + "\n")
    bad = run_gateway("ledger", "verify", "--offline", str(out), env=offline_env)
    assert bad.returncode == 1
    assert "entry 8: content does not match its leaf hash" in bad.stderr


# content deleted before its retention could end (docs/ledger.md §5.2)


def test_content_deleted_in_its_first_year_fails(log_env: tuple[dict[str, str], Path]) -> None:
    """QA's repro: the no-early-delete trigger dropped, a chunk of this week's entries deleted."""
    env, db = log_env
    _tamper(db, ("DELETE FROM ledger_chunks WHERE first_idx = 3", ()))  # entries 3 to 6
    result = run_gateway("ledger", "verify", env=env)
    assert result.returncode == 1, result.stdout
    assert "entry 3: content purged before its retention could end" in result.stderr
    assert "appended after entry 2 (2026-11-24T12:00:00+00:00)" in result.stderr
    assert "kept until at least 2027-11-23" in result.stderr
    # The same rows gone a year later is what a lawful purge of 1-year records looks like.
    later = run_gateway("ledger", "verify", "--as-of", "2027-11-24", env=env)
    assert later.returncode == 0, later.stderr
    assert later.stdout == (
        "ok: 12 entries, 4 checkpoints verified; 4 purged: 4 not before their retention could end\n"
    )


def test_a_deleted_first_chunk_is_reported_undated(log_env: tuple[dict[str, str], Path]) -> None:
    env, db = log_env
    _tamper(db, ("DELETE FROM ledger_chunks WHERE first_idx = 0", ()))  # nothing before it
    result = run_gateway("ledger", "verify", env=env)
    assert result.returncode == 0, result.stderr
    assert "3 purged: 0 not before their retention could end, 3 undated" in result.stdout
    assert "after retention" not in result.stdout


def test_an_export_with_content_gone_early_fails_offline(
    log_env: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, _ = log_env
    out = tmp_path / "export"
    assert run_gateway("ledger", "export", str(out), env=env).returncode == 0
    lines = (out / "entries.jsonl").read_text().splitlines()
    row = json.loads(lines[8])
    row["leaf"] = None
    lines[8] = json.dumps(row)
    (out / "entries.jsonl").write_text("\n".join(lines) + "\n")
    offline = {**env, "GATEWAY_HOME": str(tmp_path / "nowhere")}
    bad = run_gateway("ledger", "verify", "--offline", str(out), env=offline)
    assert bad.returncode == 1, bad.stdout
    assert "entry 8: content purged before its retention could end" in bad.stderr
    received = run_gateway(
        "ledger", "verify", "--offline", str(out), "--as-of", "2026-12-01", env=offline
    )
    assert received.returncode == 1
    assert "it is gone on 2026-12-01" in received.stderr
    bad_date = run_gateway(
        "ledger", "verify", "--offline", str(out), "--as-of", "1/12", env=offline
    )
    assert bad_date.returncode == 2
    assert "not a date YYYY-MM-DD" in bad_date.stderr


async def _build_aged_log(settings: Settings) -> None:
    """Entries of 2024-06-01: a single record kept 3 years, then records a contract stands in
    for (kept 1 year: past), then more 3-year ones; and this week's entries."""
    store = await SqliteStore.open(settings.sqlite_path)
    ring, _ = init_keyring(settings.keys_dir, NOW)
    ledger = Ledger(store=store, keyring=ring, origin=settings.log_origin, clock=lambda: NOW)
    contract = load_contract(REPO / "partners" / "google-customer-match.toml", NOW.date())
    then = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
    people = [SubjectState(subject_id=f"m-{i}") for i in range(3)]
    await ledger.start()
    try:
        for at, method in [
            (then, RecordingMethod.SINGLE),
            (then, RecordingMethod.CONTRACT),
            (then, RecordingMethod.SINGLE),
            (NOW, RecordingMethod.SINGLE),
        ]:
            await ledger.append(_entries(contract, people, at, method))
            await ledger.checkpoint()
        await ledger.stop()
    finally:
        await store.close()


def _entries(
    contract: PartnerContract, people: list[SubjectState], at: datetime, method: RecordingMethod
) -> list[LeafRecord]:
    purpose = next(iter(contract.purposes))
    transfer_id = str(uuid.uuid4())
    records = []
    for state in people:
        item = ProvisionItem(
            subject_id=state.subject_id,
            purpose=purpose,
            legal_basis=LegalBasis.CONSENT,
            fields=("email",),
        )
        entry = provision_entry(
            decision=decide(item, contract, state, at),
            contract=contract,
            outcome=Outcome.DENIED,
            transfer_id=transfer_id,
            entry_id=str(uuid.uuid4()),
            time=at,
            subject_key="k",
            method=method,
        )
        records.append(to_record(entry))
    return records


def test_a_lawful_purge_verifies_and_says_what_it_dated(tmp_path: Path) -> None:
    env = gateway_env(tmp_path)
    asyncio.run(_build_aged_log(Settings.from_env(env)))
    purged = run_gateway("ledger", "purge", env=env)  # the database's own clock decides
    assert purged.returncode == 0, purged.stderr
    assert "purged the content of 3 entries" in purged.stdout
    result = run_gateway("ledger", "verify", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "ok: 12 entries, 4 checkpoints verified; 3 purged: 3 not before their retention could end\n"
    )


# nothing to verify: exit 2, never "ok" and never a traceback


def test_an_export_without_its_entries_is_refused(
    log_env: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, _ = log_env
    out = tmp_path / "export"
    assert run_gateway("ledger", "export", str(out), env=env).returncode == 0
    (out / "entries.jsonl").unlink()
    done = run_gateway("ledger", "verify", "--offline", str(out), env=env)
    assert done.returncode == 2, done.stderr  # 1 would say the log failed verification
    assert done.stderr == (
        f"gateway: {out} is not a complete transfer-log export: no entries.jsonl\n"
    )


def test_a_home_without_a_database_is_no_verified_log(
    log_env: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, _ = log_env  # a keyring that would verify
    typo = tmp_path / "vra"
    typo.mkdir()
    mistyped = {**env, "GATEWAY_HOME": str(typo)}
    for args in (("ledger", "verify"), ("ledger", "export", str(tmp_path / "out"))):
        done = run_gateway(*args, env=mistyped)
        assert done.returncode == 2, done.stdout
        assert done.stderr.startswith(f"gateway: no database at {typo / 'gateway.sqlite3'};")
        assert done.stdout == ""
    assert list(typo.iterdir()) == []  # nothing created
    assert not (tmp_path / "out").exists()
