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
