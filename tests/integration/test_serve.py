"""`gateway serve` as a real process: starts with no configuration, creates its keys 0600,
refuses to start on a bad contract; `gateway clients create` prints only the key."""

from __future__ import annotations

import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.processes import REPO, gateway_env, run_gateway


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str, key: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    env = gateway_env(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if _get(base + "/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("gateway serve did not answer /healthz")
        yield base, env
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_starts_with_no_configuration(
    served: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    base, env = served
    assert _get(base + "/healthz") == (200, b'{"status":"ok"}')
    key_files = sorted((tmp_path / "keys").glob("*.key"))
    assert [p.name.split(".")[0] for p in key_files] == [
        "log-signing",
        "pseudonymization",
        "secrets",
    ]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in key_files)
    assert (tmp_path / "var" / "gateway.sqlite3").exists()

    created = run_gateway("clients", "create", "--name", "ops", "--role", "compliance", env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n"  # the key is the only output
    assert _get(base + "/v1/partners", key)[0] == 200
    assert _get(base + "/v1/partners", key + "x")[0] == 401


def test_serve_refuses_a_bad_contract(tmp_path: Path) -> None:
    partners = tmp_path / "partners"
    partners.mkdir()
    text = (REPO / "partners" / "google-customer-match.toml").read_text()
    (partners / "google-customer-match.toml").write_text(text + "\nsurprise = 1\n")
    result = run_gateway("serve", "--port", str(_free_port()), env=gateway_env(tmp_path, partners))
    assert result.returncode != 0
    assert "google-customer-match.toml" in result.stderr
    assert "surprise" in result.stderr


def test_clients_create_rejects_a_sender_without_partners(tmp_path: Path) -> None:
    result = run_gateway(
        "clients", "create", "--name", "x", "--role", "sender", env=gateway_env(tmp_path)
    )
    assert result.returncode == 2
    assert result.stdout == ""
