"""`gateway demo` runs with no setup and ends with a verified log."""

from __future__ import annotations

from pathlib import Path

from tests.integration.processes import gateway_env, run_gateway


def test_demo_runs_every_provision_and_verifies(tmp_path: Path) -> None:
    done = run_gateway("demo", "--keep", str(tmp_path / "home"), env=gateway_env(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    for section in ("2. customer match upload", "3. fraud check", "4. attribute-estimation",
                    "5. demo-001 withdrew", "6. gateway ledger verify"):  # fmt: skip
        assert section in out
    assert '"state": "done"' in out
    assert "consent_withdrawn" in out  # a refusal, with its reason
    assert "ok: " in out.split("6. gateway ledger verify")[1]
    assert "Hanako.Sato@Example.jp" not in done.stdout + done.stderr  # never a raw identifier
    again = run_gateway("demo", "--keep", str(tmp_path / "home"), env=gateway_env(tmp_path))
    assert (again.returncode, again.stdout) == (2, "")  # a second story would tell untruths
    assert "not empty" in again.stderr
    # Its log, served with another (empty) keys folder: refused, no new key made (a new signing
    # key would fork the log; a new pseudonymization key would key every person anew).
    env = {**gateway_env(tmp_path), "GATEWAY_HOME": str(tmp_path / "home" / "var")}
    env["GATEWAY_KEYS_DIR"] = str(tmp_path / "other-keys")
    forked = run_gateway("serve", "--port", "0", env=env)
    assert forked.returncode == 2
    assert "would fork the log" in forked.stderr
    assert "Traceback" not in forked.stderr
    assert not list((tmp_path / "other-keys").glob("*.key"))
