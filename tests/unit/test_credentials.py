"""Partner credentials: stored encrypted, bound to their ref, readable by the owner only."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.credentials import credentials_path, load_credentials, store_credential
from gateway.errors import ConfigError
from gateway.keyring import init_keyring

NOW = datetime(2026, 11, 24, tzinfo=UTC)


def test_round_trip_without_the_secret_in_clear(tmp_path: Path) -> None:
    keyring, _ = init_keyring(tmp_path / "keys", NOW)
    path = credentials_path(tmp_path)
    store_credential(path, keyring, "google-datamanager", "ya29.secret-token")
    store_credential(path, keyring, "sample-fraud-provider", "fraud-key")
    assert "secret-token" not in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_credentials(path, keyring) == {
        "google-datamanager": "ya29.secret-token",
        "sample-fraud-provider": "fraud-key",
    }


def test_a_token_moved_to_another_ref_does_not_decrypt(tmp_path: Path) -> None:
    keyring, _ = init_keyring(tmp_path / "keys", NOW)
    path = credentials_path(tmp_path)
    store_credential(path, keyring, "a", "secret")
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({"b": stored["a"]}))
    with pytest.raises(ConfigError):
        load_credentials(path, keyring)


def test_no_file_is_no_credentials_and_a_bad_file_is_an_error(tmp_path: Path) -> None:
    keyring, _ = init_keyring(tmp_path / "keys", NOW)
    assert load_credentials(credentials_path(tmp_path), keyring) == {}
    credentials_path(tmp_path).write_text("[1, 2]")
    with pytest.raises(ConfigError):
        load_credentials(credentials_path(tmp_path), keyring)
