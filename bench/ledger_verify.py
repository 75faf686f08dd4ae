"""Benchmark: `gateway ledger verify` over a one-million-entry log, against a floor.

    .venv/bin/python bench/ledger_verify.py [--entries 1000000]

Builds a SQLite transfer log of realistic entries (provision_entry from the Google sample
contract, appended through the Ledger with a checkpoint every 100,000 entries), then times the
real command, `gateway ledger verify`, as a separate process. The floor, timed in the same run,
is the least any verifier must do: read every stored leaf and its hash from the same database
and SHA-256 the leaf (RFC 9162 §2.1.1), with no tree and no signatures. Target: under 10 s.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from gateway.contracts import load_contract
from gateway.keyring import init_keyring
from gateway.ledger.entries import Outcome, provision_entry, to_record
from gateway.ledger.service import Ledger
from gateway.models import LegalBasis, SubjectState
from gateway.policy import ProvisionItem, decide
from gateway.pseudonym import subject_key
from gateway.settings import Settings
from gateway.storage.ledger_layout import decode
from gateway.storage.sqlite import SqliteStore

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
BATCH = 5_000


async def build(settings: Settings, entries: int) -> None:
    store = await SqliteStore.open(settings.sqlite_path)
    ring, _ = init_keyring(settings.keys_dir, NOW)
    ledger = Ledger(
        store=store, keyring=ring, origin=settings.log_origin, clock=lambda: NOW,
        checkpoint_every=100_000,
    )  # fmt: skip
    contract = load_contract(REPO / "partners" / "google-customer-match.toml", NOW.date())
    item = ProvisionItem(
        subject_id="m", purpose="ad_customer_match", legal_basis=LegalBasis.CONSENT,
        fields=("email", "phone"),
    )  # fmt: skip
    decision = decide(item, contract, SubjectState(subject_id="m"), NOW)
    await ledger.start()
    try:
        for start in range(0, entries, BATCH):
            records = []
            for i in range(start, min(start + BATCH, entries)):
                subject = f"member-{i:08d}"
                entry = provision_entry(
                    decision=decision.model_copy(update={"subject_id": subject}),
                    contract=contract, outcome=Outcome.DENIED, transfer_id=f"t-{start}",
                    entry_id=f"e-{i}", time=NOW,
                    subject_key=subject_key(subject, key_id="k", key=b"k" * 32),
                )  # fmt: skip
                records.append(to_record(entry))
            await ledger.append(records)
    finally:
        await ledger.stop()
        await store.close()


def floor(db: Path) -> float:
    """Read every stored leaf (its chunk decoded, as any reader of this layout must) and its
    leaf hash, and check SHA-256(0x00 || leaf) against it: seconds."""
    started = time.perf_counter()
    conn = sqlite3.connect(db)
    hashes = conn.execute("SELECT leaf_hash FROM ledger_leaves ORDER BY idx")
    chunks = conn.execute("SELECT first_idx, count, codec, data FROM ledger_chunks ORDER BY 1")
    leaves = (leaf for chunk in chunks for leaf in decode(*chunk))
    sha256 = hashlib.sha256
    bad = sum(
        sha256(b"\x00" + leaf).digest() != h for leaf, (h,) in zip(leaves, hashes, strict=True)
    )
    conn.close()
    assert bad == 0
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env |= {"GATEWAY_HOME": f"{tmp}/var", "GATEWAY_KEYS_DIR": f"{tmp}/keys"}
        settings = Settings.from_env(env)
        started = time.perf_counter()
        asyncio.run(build(settings, args.entries))
        print(f"built {args.entries:,} entries in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "ledger", "verify"],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        verify_s = time.perf_counter() - started
        print(result.stdout.strip() or result.stderr.strip())
        floor_s = floor(settings.sqlite_path)
    print(f"gateway ledger verify (process, end to end): {verify_s:6.2f} s")
    print(f"floor: read every leaf + SHA-256 it:         {floor_s:6.2f} s")
    print(f"ratio verify / floor: {verify_s / floor_s:.2f}  (target: verify under 10 s)")
    return result.returncode


if __name__ == "__main__":
    raise SystemExit(main())
