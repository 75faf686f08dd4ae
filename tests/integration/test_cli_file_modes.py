"""Files the gateway creates are its user's alone: the keys folder 0700 (tightened when it
exists), the data folder 0700 when the gateway creates it, the SQLite database (consents, the
transfer log) and its -wal and -shm files 0600. Under umask 022, as on most hosts."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.storage.sqlite import SqliteStore
from tests.integration.processes import gateway_env, run_gateway


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    old = os.umask(0o022)  # the processes started here inherit it
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_keys_init_tightens_an_existing_open_folder(tmp_path: Path) -> None:
    env = gateway_env(tmp_path)
    keys_dir = Path(env["GATEWAY_KEYS_DIR"])
    keys_dir.mkdir(mode=0o755)
    done = run_gateway("keys", "init", env=env)
    assert done.returncode == 0, done.stderr
    assert _mode(keys_dir) == 0o700
    keys_dir.chmod(0o755)
    assert run_gateway("keys", "rotate", "secrets", env=env).returncode == 0
    assert _mode(keys_dir) == 0o700


def test_the_database_and_the_folder_made_for_it_are_private(tmp_path: Path) -> None:
    env = gateway_env(tmp_path)
    assert run_gateway("keys", "init", env=env).returncode == 0
    done = run_gateway("ledger", "checkpoint", env=env)  # opens, so creates, the database
    assert done.returncode == 0, done.stderr
    home = Path(env["GATEWAY_HOME"])
    assert _mode(home) == 0o700
    assert _mode(home / "gateway.sqlite3") == 0o600


async def test_sqlite_gives_wal_and_shm_the_databases_mode(tmp_path: Path) -> None:
    path = tmp_path / "var" / "gateway.sqlite3"
    store = await SqliteStore.open(path)
    try:
        files = sorted(p.name for p in path.parent.iterdir())
        assert files == ["gateway.sqlite3", "gateway.sqlite3-shm", "gateway.sqlite3-wal"]
        assert {name: _mode(path.parent / name) for name in files} == dict.fromkeys(files, 0o600)
    finally:
        await store.close()


async def test_an_existing_data_folder_keeps_its_mode(tmp_path: Path) -> None:
    """GATEWAY_HOME may be a folder the operator chose and shares; only what the gateway
    creates is made private."""
    home = tmp_path / "shared"
    home.mkdir(mode=0o755)
    store = await SqliteStore.open(home / "gateway.sqlite3")
    await store.close()
    assert _mode(home) == 0o755
    assert _mode(home / "gateway.sqlite3") == 0o600


async def test_a_database_an_older_gateway_left_open_is_made_private(tmp_path: Path) -> None:
    """Gateways before 0600 made the database (and so its -wal and -shm) 0644: opening it
    now takes group and other permissions off all three."""
    path = tmp_path / "var" / "gateway.sqlite3"
    store = await SqliteStore.open(path)
    await store.close()
    (path.parent / "gateway.sqlite3-wal").touch()  # as a store left running would have them
    (path.parent / "gateway.sqlite3-shm").touch()
    files = sorted(path.parent.iterdir())
    for file in files:
        file.chmod(0o644)
    store = await SqliteStore.open(path)
    try:
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
    finally:
        await store.close()
