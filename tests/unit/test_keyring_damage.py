"""The keyring facing damage: a stored secret that does not open, a keys folder that is a file
or open to others, a key file that is a link to nothing. Each is a ConfigError (one line and exit
2 at the command line) or, for a folder the gateway may not tighten, a warning; never a raw
exception, never the secret."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.errors import ConfigError
from gateway.keyring import (
    SECRETS,
    Keyring,
    init_keyring,
    load_keyring,
    new_key,
    prepare_keys_dir,
    write_key,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
REF = b"google-datamanager"
SECRET = b"ya29.the-partner-token"


@pytest.fixture
def ring(tmp_path: Path) -> Keyring:
    keyring, _ = init_keyring(tmp_path / "keys", NOW)
    return keyring


def _damaged(token: str) -> dict[str, str]:
    kid, _, body = token.partition(":")
    raw = base64.b64decode(body)
    return {
        "not base64": f"{kid}:{body[:5]}!",
        "base64 of a bad length": f"{kid}:{body[:5]}",
        "beyond ASCII": f"{kid}:{body[:-2]}é=",
        "shorter than a nonce": f"{kid}:{base64.b64encode(raw[:5]).decode()}",
        "a nonce and nothing else": f"{kid}:{base64.b64encode(raw[:12]).decode()}",
        "no body": f"{kid}:",
        "empty": "",
        "no key id (a secret pasted in by hand)": SECRET.decode(),
        "altered": f"{kid}:{base64.b64encode(raw[:-1] + bytes([raw[-1] ^ 1])).decode()}",
        "an unknown key": f"ffffffff:{body}",
    }


def test_every_damaged_token_is_a_config_error_naming_the_ref_never_the_secret(
    ring: Keyring,
) -> None:
    token = ring.encrypt_secret(SECRET, context=REF)
    for what, damaged in _damaged(token).items():
        with pytest.raises(ConfigError) as caught:
            ring.decrypt_secret(damaged, context=REF)
        message = str(caught.value)
        assert "credentials.json" in message, what
        assert "'google-datamanager' does not decrypt" in message, what
        assert "gateway credentials set google-datamanager" in message, what
        assert "ya29" not in message, what
        assert token.partition(":")[2][:8] not in message, what  # nor the ciphertext


def test_a_wrong_key_names_its_id_and_the_ref(ring: Keyring) -> None:
    token = ring.encrypt_secret(SECRET, context=REF)
    with pytest.raises(ConfigError, match="no secrets key with id 'ffffffff'"):
        ring.decrypt_secret("ffffffff:" + token.partition(":")[2], context=REF)
    with pytest.raises(ConfigError, match="'other-ref' does not decrypt: it failed auth"):
        ring.decrypt_secret(token, context=b"other-ref")
    assert ring.decrypt_secret(token, context=REF) == SECRET


def test_a_keys_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "keys"
    not_a_folder.write_text("")
    for attempt in (
        lambda: init_keyring(not_a_folder, NOW),
        lambda: write_key(not_a_folder, new_key(SECRETS, NOW)),
        lambda: load_keyring(not_a_folder),
    ):
        with pytest.raises(ConfigError, match="keys: not a folder"):
            attempt()


def test_a_key_file_linking_to_nothing_is_refused(tmp_path: Path) -> None:
    init_keyring(tmp_path, NOW)
    (tmp_path / "secrets.0badc0de.key").symlink_to(tmp_path / "gone.key")
    with pytest.raises(ConfigError, match=r"secrets\.0badc0de\.key: cannot read .* not there"):
        load_keyring(tmp_path)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Folders made 0755, as on most hosts, whatever the umask of the test run."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("open_umask")
def test_an_existing_open_keys_folder_is_tightened(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir(mode=0o755)
    init_keyring(keys_dir, NOW)
    assert _mode(keys_dir) == 0o700
    keys_dir.chmod(0o755)
    write_key(keys_dir, new_key(SECRETS, NOW))  # `gateway keys rotate`
    assert _mode(keys_dir) == 0o700
    keys_dir.chmod(0o500)  # read-only but private: left alone
    prepare_keys_dir(keys_dir)
    assert _mode(keys_dir) == 0o500


@pytest.mark.usefixtures("open_umask")
def test_a_folder_of_another_user_is_left_as_it_is_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir(mode=0o755)
    owner = keys_dir.stat().st_uid
    monkeypatch.setattr("gateway.keyring.os.geteuid", lambda: owner + 1)
    with capture_logs() as logs:
        _, created = init_keyring(keys_dir, NOW)
    assert len(created) == 3
    assert _mode(keys_dir) == 0o755
    [warning] = [e for e in logs if e["event"] == "keys_dir_not_private"]
    assert warning["log_level"] == "warning"
    assert (warning["mode"], warning["problem"]) == ("0755", "owned by another user")


@pytest.mark.usefixtures("open_umask")
def test_a_chmod_that_fails_is_a_warning_not_a_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys_dir = tmp_path / "keys"
    keys_dir.mkdir(mode=0o755)

    def read_only_mount(self: Path, mode: int) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(Path, "chmod", read_only_mount)
    with capture_logs() as logs:
        init_keyring(keys_dir, NOW)
    [warning] = [e for e in logs if e["event"] == "keys_dir_not_private"]
    assert warning["problem"] == "chmod failed: Read-only file system"
