"""The keyring: created on first start with mode 0600, rotates without losing old keys."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from gateway.errors import ConfigError
from gateway.keyring import (
    LOG_SIGNING,
    PSEUDONYMIZATION,
    PURPOSES,
    SECRETS,
    init_keyring,
    load_keyring,
    new_key,
    write_key,
)

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_first_start_creates_one_key_per_purpose_private_to_the_owner(tmp_path: Path) -> None:
    keys_dir = tmp_path / "keys"
    ring, created = init_keyring(keys_dir, NOW)
    assert sorted(k.purpose for k in created) == sorted(PURPOSES)
    assert stat.S_IMODE(keys_dir.stat().st_mode) == 0o700
    files = sorted(keys_dir.glob("*.key"))
    assert len(files) == 3
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert {ring.current(p).kid for p in PURPOSES} == {k.kid for k in created}


def test_second_start_reuses_the_same_keys(tmp_path: Path) -> None:
    first, _ = init_keyring(tmp_path, NOW)
    second, created = init_keyring(tmp_path, NOW + timedelta(days=1))
    assert created == []
    assert {k.kid for k in second.keys} == {k.kid for k in first.keys}


def test_rotation_makes_a_new_current_key_and_keeps_the_old_one(tmp_path: Path) -> None:
    ring, _ = init_keyring(tmp_path, NOW)
    old = ring.current(PSEUDONYMIZATION)
    token = ring.encrypt_secret(b"partner-credential", context=b"google")
    write_key(tmp_path, new_key(PSEUDONYMIZATION, NOW + timedelta(days=30)))
    write_key(tmp_path, new_key(SECRETS, NOW + timedelta(days=30)))
    rotated = load_keyring(tmp_path)
    assert rotated.current(PSEUDONYMIZATION).kid != old.kid
    assert old.kid in rotated.by_kid(PSEUDONYMIZATION)
    # What the retired secrets key sealed still opens.
    assert rotated.decrypt_secret(token, context=b"google") == b"partner-credential"


def test_signing_key_signs_and_its_public_half_verifies(tmp_path: Path) -> None:
    ring, _ = init_keyring(tmp_path, NOW)
    signature = ring.signing_key().sign(b"checkpoint")
    Ed25519PublicKey.from_public_bytes(ring.signing_public_key()).verify(signature, b"checkpoint")
    assert ring.current(LOG_SIGNING).algorithm == "ed25519"


def test_an_altered_secret_fails_authentication(tmp_path: Path) -> None:
    ring, _ = init_keyring(tmp_path, NOW)
    token = ring.encrypt_secret(b"s3cret")
    kid, _, body = token.partition(":")
    flipped = body[:-4] + ("AAAA" if body[-4:] != "AAAA" else "BBBB")
    with pytest.raises(ConfigError, match="failed authentication"):
        ring.decrypt_secret(f"{kid}:{flipped}")
    with pytest.raises(ConfigError, match="no secrets key"):
        ring.decrypt_secret(f"ffffffff:{body}")


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    init_keyring(tmp_path, NOW)
    path = next(tmp_path.glob("secrets.*.key"))
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_keyring(tmp_path)


def test_a_key_file_whose_id_does_not_match_its_material_is_refused(tmp_path: Path) -> None:
    init_keyring(tmp_path, NOW)
    path = next(tmp_path.glob("pseudonymization.*.key"))
    raw = json.loads(path.read_text())
    raw["kid"] = "00000000"
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="does not match"):
        load_keyring(tmp_path)


def test_a_missing_purpose_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="gateway keys init"):
        load_keyring(tmp_path / "none").current(LOG_SIGNING)
    with pytest.raises(ConfigError, match="unknown key purpose"):
        new_key("tls", NOW)
