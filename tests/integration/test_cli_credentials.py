"""`gateway credentials list` and `gateway serve` with a damaged credentials.json: one line
naming the ref and the file, exit status 2; never a traceback, never the secret."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.processes import gateway_env, run_gateway

SECRET = "ya29.a-partner-token"
REF = "google-datamanager"


@pytest.fixture
def stored(tmp_path: Path) -> tuple[dict[str, str], Path]:
    env = gateway_env(tmp_path)
    assert run_gateway("keys", "init", env=env).returncode == 0
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "credentials", "set", REF],
        input=SECRET, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return env, Path(env["GATEWAY_HOME"]) / "credentials.json"


def _damage(path: Path, how: str) -> str:
    """Damage the stored token `how`; returns the damaged token."""
    token: str = json.loads(path.read_text())[REF]
    kid, _, body = token.partition(":")
    damaged = {
        "cut": f"{kid}:{body[:5]}",  # not base64 (binascii.Error before the fix)
        "short": f"{kid}:AAAA",  # 3 bytes: no whole nonce (ValueError before the fix)
        "pasted": SECRET,  # the secret itself, by hand: no key id
        "flipped": f"{kid}:{'B' if body[0] == 'A' else 'A'}{body[1:]}",  # fails authentication
    }[how]
    path.write_text(json.dumps({REF: damaged}))
    return damaged


LIST, SERVE = ("credentials", "list"), ("serve", "--port", "0")


@pytest.mark.parametrize(
    ("command", "how"),
    [(LIST, "cut"), (LIST, "short"), (LIST, "pasted"), (LIST, "flipped"), (SERVE, "cut"),
     (SERVE, "short")],
    ids=["list-cut", "list-short", "list-pasted", "list-flipped", "serve-cut", "serve-short"],
)  # fmt: skip
def test_a_damaged_token_is_one_line_naming_the_ref(
    stored: tuple[dict[str, str], Path], how: str, command: tuple[str, ...]
) -> None:
    env, path = stored
    token = _damage(path, how)
    done = run_gateway(*command, env=env)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    [line] = [x for x in done.stderr.splitlines() if x.startswith("gateway: ")]
    assert f"credentials.json: the credential '{REF}' does not decrypt" in line
    assert f"gateway credentials set {REF}" in line
    assert SECRET not in done.stderr + done.stdout
    assert token not in done.stderr + done.stdout
