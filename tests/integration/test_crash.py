"""Crash: SIGKILL the service in the middle of a 100,000-record upload, start it again; and
in the middle of a fraud check, while the provider holds its request.

Real processes on loopback: `gateway serve` (SQLite, its default), `gateway upload` streaming
a CSV, and the sandbox in this test's process. The service is killed while the upload is
under way; the upload command's connection breaks and it sends the file again under the same
idempotency key once the service is back. Afterwards every allowed record has reached the
sandbox exactly once (counted by member digest), every one has its log entries (allowed and
delivered), and `gateway ledger verify` passes.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from gateway.ledger.transfer_filter import TransferFilter
from gateway.sandbox import FaultPlan, SandboxState, sandbox_server
from gateway.storage.sqlite import SqliteStore
from tests.integration.conftest import contracts_pointing_at
from tests.integration.processes import gateway_env, run_gateway

RECORDS = 100_000
PARTNER = "google-customer-match"
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def listening(port: int, limit_s: float = 60) -> None:
    async with asyncio.timeout(limit_s):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return


def write_inputs(folder: Path) -> tuple[Path, Path]:
    members, consents = folder / "members.csv", folder / "consents.jsonl"
    with members.open("w") as m, consents.open("w") as c:
        m.write("subject_id,email\n")
        for n in range(RECORDS):
            m.write(f"cust-{n},person.{n}@example.com\n")
            if n % 10:  # a tenth has no consent: denied, never sent
                c.write(
                    f'{{"subject_id":"cust-{n}","purpose":"ad_customer_match",'
                    '"action":"grant","notice_version":"pn-1","channel":"web",'
                    '"obtained_at":"2026-04-01T00:00:00Z",'
                    '"foreign_disclosure_version":"us-google-2025-04"}\n'
                )
    return members, consents


def serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_sigkill_mid_upload_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    state = SandboxState(seed=3)
    async with sandbox_server(state) as sandbox_url:
        env = gateway_env(tmp_path, contracts_pointing_at(sandbox_url, tmp_path / "partners"))
        env.update(GATEWAY_SANDBOX="off", GATEWAY_LOG_LEVEL="warning")
        members, consents = write_inputs(tmp_path)
        admin = run_gateway("clients", "create", "--name", "a", "--role", "admin", env=env)
        sender = run_gateway(
            "clients", "create", "--name", "s", "--role", "sender", "--partner", PARTNER, env=env
        )
        port = free_port()
        service = serve(env, port)
        try:
            await listening(port)
            url = f"http://127.0.0.1:{port}"
            imported = await asyncio.to_thread(
                subprocess.run,
                ["curl", "-sf", "-X", "POST", "-H", f"Authorization: Bearer {admin.stdout.strip()}",
                 "-H", "Content-Type: application/x-ndjson", "--data-binary", f"@{consents}",
                 f"{url}/v1/consents/import"],
                capture_output=True, check=False,
            )  # fmt: skip
            assert imported.returncode == 0, imported.stderr
            upload = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "upload", "--partner", PARTNER, "--url", url,
                "--api-key", sender.stdout.strip(), "--retries", "20", str(members),
                env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            # Kill once the service has committed part of the upload (a log entry exists).
            await _until_some_entries(tmp_path)
            service.send_signal(signal.SIGKILL)
            service.wait(30)
            service = serve(env, port)
            out, err = await asyncio.wait_for(upload.communicate(), 600)
            assert upload.returncode == 0, err.decode()
            job = json.loads(out.decode().strip().splitlines()[-1])
        finally:
            service.terminate()
            service.wait(60)
        allowed = RECORDS - RECORDS // 10
        assert job["state"] == "done"
        assert job["counts"]["allowed"] == allowed
        assert job["counts"]["delivered"] == allowed
        arrived = state.member_counts("ingest")
        assert sum(arrived.values()) == allowed  # every allowed record arrived...
        assert set(arrived.values()) == {1}  # ...exactly once
        store = await SqliteStore.open(tmp_path / "var" / "gateway.sqlite3")
        try:
            outcomes: Counter[str] = Counter()
            after = -1
            while page := await store.ledger_find(TransferFilter(), after=after, limit=50_000):
                outcomes.update(json.loads(leaf.leaf or b"{}")["outcome"] for leaf in page)
                after = page[-1].index
        finally:
            await store.close()
        assert outcomes["allowed"] == allowed
        assert outcomes["delivered"] == allowed
        assert outcomes["denied"] == RECORDS // 10
        verified = run_gateway("ledger", "verify", env=env)
        assert verified.returncode == 0, verified.stderr


async def _until_some_entries(home: Path) -> None:
    """Until the service has committed some of the upload (read-only look at its file)."""
    database = home / "var" / "gateway.sqlite3"
    async with asyncio.timeout(120):
        while True:
            await asyncio.sleep(0.2)
            done = await asyncio.to_thread(_records_done, database)
            if done > 0:
                assert done < RECORDS, "the upload finished before the kill: make it larger"
                return


def _records_done(database: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("SELECT coalesce(max(records_done), 0) FROM jobs").fetchone()
        return int(row[0])
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


async def test_sigkill_during_a_fraud_check_leaves_its_provision_in_the_log(
    tmp_path: Path,
) -> None:
    # The provider holds the request; the service is killed once the request has arrived.
    # The order's fields have left, so the log must say so: the provision is written before
    # the request is sent, and only the outcome and the receipt are missing.
    state = SandboxState(seed=5)
    state.set_faults("fraud", FaultPlan(latency_ms=2_000))  # past the 800 ms budget
    async with sandbox_server(state) as sandbox_url:
        env = gateway_env(tmp_path, contracts_pointing_at(sandbox_url, tmp_path / "partners"))
        env.update(GATEWAY_SANDBOX="off", GATEWAY_LOG_LEVEL="warning")
        fraud = run_gateway("clients", "create", "--name", "f", "--role", "fraud", env=env)
        port = free_port()
        service = serve(env, port)
        try:
            await listening(port)
            body = json.dumps(
                {"partner": "sample-fraud-provider", "subject_id": "cust-1",
                 "order": {"order_id": "o-1", "amount": 1200, "currency": "JPY",
                           "email": "dana@example.com"}}
            )  # fmt: skip
            check = await asyncio.create_subprocess_exec(
                "curl", "-s", "-X", "POST", "-H", f"Authorization: Bearer {fraud.stdout.strip()}",
                "-H", "Content-Type: application/json", "--data-binary", body,
                f"http://127.0.0.1:{port}/v1/fraud-checks",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            async with asyncio.timeout(30):
                while True:  # until the request is at the provider, which holds it
                    if state.stats()["fraud"]["requests"]:
                        break
                    await asyncio.sleep(0.01)
            service.send_signal(signal.SIGKILL)
            service.wait(30)
            await check.wait()
        finally:
            if service.poll() is None:
                service.kill()
                service.wait(30)
    store = await SqliteStore.open(tmp_path / "var" / "gateway.sqlite3")
    try:
        page = await store.ledger_find(TransferFilter(subject_id="cust-1"), after=-1, limit=10)
    finally:
        await store.close()
    [provision] = [json.loads(leaf.leaf or b"{}") for leaf in page]
    assert provision["outcome"] == "allowed"
    assert provision["partner"]["id"] == "sample-fraud-provider"
    assert len(provision["payload_sha256"]) == 64  # the request as it left
    verified = run_gateway("ledger", "verify", env=env)
    assert verified.returncode == 0, verified.stderr
