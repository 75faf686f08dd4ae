"""The local keyring of the embedded default: one file per key, created on first start.

Three key purposes, each with a key id (kid) so keys can rotate:

- `log-signing`: Ed25519, signs transfer-log checkpoints (C2SP signed-note);
- `pseudonymization`: 32 random bytes, HMAC-SHA256 key for subject keys;
- `secrets`: 32 random bytes, AES-256-GCM key that encrypts stored secrets (partner credentials).

A key file is `<purpose>.<kid>.key`, JSON, mode 0600, in a folder of mode 0700. The kid is the
first 8 hex digits of SHA-256 over the key material: stable, and it reveals nothing usable. The
newest key of a purpose (by `created_at`) is the current one; older ones stay readable so that
what they signed, keyed or encrypted still verifies and decrypts after a rotation.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.errors import ConfigError

LOG_SIGNING: Final = "log-signing"
PSEUDONYMIZATION: Final = "pseudonymization"
SECRETS: Final = "secrets"
PURPOSES: Final = (LOG_SIGNING, PSEUDONYMIZATION, SECRETS)
_ALGORITHMS: Final = {
    LOG_SIGNING: "ed25519",
    PSEUDONYMIZATION: "hmac-sha256",
    SECRETS: "aes-256-gcm",
}


@dataclass(frozen=True)
class KeyFile:
    purpose: str
    kid: str
    algorithm: str
    created_at: datetime
    material: bytes  # Ed25519: the 32-byte raw private key; others: 32 random bytes


def _kid(material: bytes) -> str:
    return hashlib.sha256(material).hexdigest()[:8]


def new_key(purpose: str, now: datetime) -> KeyFile:
    """A fresh key for `purpose`. Raises ConfigError for an unknown purpose."""
    if purpose not in _ALGORITHMS:
        raise ConfigError(f"unknown key purpose {purpose!r}; one of {', '.join(PURPOSES)}")
    material = secrets.token_bytes(32)  # an Ed25519 private key is any 32 random bytes
    return KeyFile(purpose, _kid(material), _ALGORITHMS[purpose], now, material)


def write_key(directory: Path, key: KeyFile) -> Path:
    """Write a key file with mode 0600 (created that way: never briefly world-readable)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{key.purpose}.{key.kid}.key"
    payload = {
        "purpose": key.purpose,
        "kid": key.kid,
        "algorithm": key.algorithm,
        "created_at": key.created_at.isoformat(),
        "material": base64.b64encode(key.material).decode(),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle)
    return path


def read_key(path: Path) -> KeyFile:
    """Read one key file. Raises ConfigError if it is unreadable, malformed or not 0600."""
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path}: key file is readable by others; chmod 600 it")
    try:
        raw = json.loads(path.read_text())
        key = KeyFile(
            purpose=raw["purpose"],
            kid=raw["kid"],
            algorithm=raw["algorithm"],
            created_at=datetime.fromisoformat(raw["created_at"]),
            material=base64.b64decode(raw["material"], validate=True),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a readable key file ({type(exc).__name__})") from exc
    if key.kid != _kid(key.material) or _ALGORITHMS.get(key.purpose) != key.algorithm:
        raise ConfigError(f"{path}: key id or algorithm does not match the key material")
    return key


@dataclass(frozen=True)
class Keyring:
    """Every key of every purpose; `current(purpose)` is the newest."""

    keys: tuple[KeyFile, ...]

    def of(self, purpose: str) -> list[KeyFile]:
        return sorted((k for k in self.keys if k.purpose == purpose), key=lambda k: k.created_at)

    def current(self, purpose: str) -> KeyFile:
        keys = self.of(purpose)
        if not keys:
            raise ConfigError(f"the keyring has no {purpose} key; run `gateway keys init`")
        return keys[-1]

    def by_kid(self, purpose: str) -> dict[str, bytes]:
        """Every key of a purpose by kid: current and retired, for verification."""
        return {k.kid: k.material for k in self.of(purpose)}

    def signing_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.current(LOG_SIGNING).material)

    def signing_public_key(self) -> bytes:
        return self.signing_key().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def signing_public_keys(self) -> list[bytes]:
        """Every log-signing public key, oldest first: checkpoints signed before a rotation
        still verify under the retired ones."""
        return [
            Ed25519PrivateKey.from_private_bytes(k.material)
            .public_key()
            .public_bytes(Encoding.Raw, PublicFormat.Raw)
            for k in self.of(LOG_SIGNING)
        ]

    def encrypt_secret(self, plaintext: bytes, *, context: bytes = b"") -> str:
        """AES-256-GCM under the current secrets key: `kid:base64(nonce || ciphertext)`."""
        key = self.current(SECRETS)
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(key.material).encrypt(nonce, plaintext, context)
        return f"{key.kid}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt_secret(self, token: str, *, context: bytes = b"") -> bytes:
        """Raises ConfigError when the kid is unknown or the ciphertext was altered."""
        kid, _, body = token.partition(":")
        material = self.by_kid(SECRETS).get(kid)
        if material is None:
            raise ConfigError(f"no secrets key with id {kid!r} in the keyring")
        raw = base64.b64decode(body)
        try:
            return AESGCM(material).decrypt(raw[:12], raw[12:], context)
        except InvalidTag as exc:
            raise ConfigError("a stored secret failed authentication") from exc


def load_keyring(directory: Path) -> Keyring:
    """Read every `*.key` file in the folder. Raises ConfigError on a bad file."""
    if not directory.is_dir():
        return Keyring(())
    return Keyring(tuple(read_key(p) for p in sorted(directory.glob("*.key"))))


def init_keyring(directory: Path, now: datetime) -> tuple[Keyring, list[KeyFile]]:
    """Load the keyring, creating a key for every purpose that has none (first start).

    Returns the keyring and the keys it created. Raises ConfigError on a bad key file.
    """
    ring = load_keyring(directory)
    created = [new_key(p, now) for p in PURPOSES if not ring.of(p)]
    for key in created:
        write_key(directory, key)
    return Keyring(ring.keys + tuple(created)), created
