"""`gateway keys` as a real process: a keys folder that is a file, missing or empty, or holds a
link to nothing, is one line on stderr and exit status 2, never a traceback or a silent 0."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.integration.processes import gateway_env, run_gateway


def _one_line_error(done: subprocess.CompletedProcess[str], *says: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr
    for text in says:
        assert text in done.stderr


@pytest.mark.parametrize(
    "args", [("keys", "init"), ("keys", "show"), ("keys", "rotate", "secrets")]
)
def test_a_keys_folder_that_is_a_file_is_refused(tmp_path: Path, args: tuple[str, ...]) -> None:
    env = gateway_env(tmp_path)
    Path(env["GATEWAY_KEYS_DIR"]).write_text("")
    done = run_gateway(*args, env=env)
    _one_line_error(done, f"gateway: {env['GATEWAY_KEYS_DIR']}: not a folder")
    assert done.stdout == ""


def test_show_without_a_keyring_says_so(tmp_path: Path) -> None:
    env = gateway_env(tmp_path)
    keys_dir = Path(env["GATEWAY_KEYS_DIR"])
    _one_line_error(run_gateway("keys", "show", env=env), f"no keys folder at {keys_dir}")
    assert not keys_dir.exists()  # show never creates it
    keys_dir.mkdir()
    _one_line_error(run_gateway("keys", "show", env=env), f"no keys in {keys_dir}")


def test_a_key_file_linking_to_nothing_is_named(tmp_path: Path) -> None:
    env = gateway_env(tmp_path)
    assert run_gateway("keys", "init", env=env).returncode == 0
    link = Path(env["GATEWAY_KEYS_DIR"]) / "secrets.0badc0de.key"
    link.symlink_to(tmp_path / "moved-away.key")
    for args in (("keys", "show"), ("keys", "init")):
        _one_line_error(run_gateway(*args, env=env), f"{link}: cannot read the key file")
