"""The local keyring of the embedded default: one file per key, created on first start.

Three key purposes, each with a key id (kid) so keys can rotate:

- `log-signing`: Ed25519, signs transfer-log checkpoints (C2SP signed-note);
- `pseudonymization`: 32 random bytes, HMAC-SHA256 key for subject keys;
- `secrets`: 32 random bytes, AES-256-GCM key that encrypts stored secrets (partner credentials).

A key file is `<purpose>.<kid>.key`, JSON, mode 0600, in a folder of mode 0700 (an existing
folder is tightened to 0700 when the gateway initializes it or adds a key, if this user owns it;
when it cannot be, a warning says so). The kid is the first 8 hex digits of SHA-256 over the key
material: stable, and it reveals nothing usable. The newest key of a purpose (by `created_at`) is
the current one; older ones stay readable so that what they signed, keyed or encrypted still
verifies and decrypts after a rotation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.errors import ConfigError
from gateway.file_modes import make_private

LOG_SIGNING: Final = "log-signing"
PSEUDONYMIZATION: Final = "pseudonymization"
SECRETS: Final = "secrets"
PURPOSES: Final = (LOG_SIGNING, PSEUDONYMIZATION, SECRETS)
_ALGORITHMS: Final = {
    LOG_SIGNING: "ed25519",
    PSEUDONYMIZATION: "hmac-sha256",
    SECRETS: "aes-256-gcm",
}
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16

log = structlog.get_logger("gateway.keyring")


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


def prepare_keys_dir(directory: Path) -> None:
    """Create the keys folder with mode 0700, or tighten an existing one to 0700.

    Raises ConfigError when the path is not a folder or cannot be created. A folder this user
    does not own, or cannot chmod (a read-only mount), is left as it is, with a warning.
    """
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError as exc:  # exist_ok covers folders only: a file is in the way
        raise ConfigError(f"{directory}: not a folder; the keys folder must be one") from exc
    except OSError as exc:
        raise ConfigError(f"{directory}: cannot create the keys folder ({exc.strerror})") from exc
    _tighten(directory)


def _tighten(directory: Path) -> None:
    make_private(
        directory,
        event="keys_dir_not_private",
        hint="make it mode 0700, owned by the service's user",
    )


def write_key(directory: Path, key: KeyFile) -> Path:
    """Write a key file with mode 0600 (created that way: never briefly world-readable), in a
    folder of mode 0700 (`prepare_keys_dir`). Raises ConfigError."""
    prepare_keys_dir(directory)
    return _write_key_file(directory, key)


def _write_key_file(directory: Path, key: KeyFile) -> Path:
    """Raises ConfigError when the file cannot be created (a read-only folder, say)."""
    path = directory / f"{key.purpose}.{key.kid}.key"
    payload = {
        "purpose": key.purpose,
        "kid": key.kid,
        "algorithm": key.algorithm,
        "created_at": key.created_at.isoformat(),
        "material": base64.b64encode(key.material).decode(),
    }
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create the key file ({exc.strerror})") from exc
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle)
    return path


def read_key(path: Path) -> KeyFile:
    """Read one key file. Raises ConfigError if it is unreadable (a link to nothing, too),
    malformed or not 0600."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        dangling = " (a link to a file that is not there)" if path.is_symlink() else ""
        raise ConfigError(f"{path}: cannot read the key file: {exc.strerror}{dangling}") from exc
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
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = AESGCM(key.material).encrypt(nonce, plaintext, context)
        return f"{key.kid}:{base64.b64encode(nonce + sealed).decode()}"

    def decrypt_secret(self, token: str, *, context: bytes = b"") -> bytes:
        """Open what `encrypt_secret` sealed. `context` is what the secret is stored under (a
        partner credential's ref, in credentials.json) and is named in errors.

        Raises ConfigError when the kid is unknown, the token is not one `encrypt_secret`
        makes (truncated, not base64) or the ciphertext was altered. The message never holds
        the token or the secret."""
        kid, _, body = token.partition(":")
        material = self.by_kid(SECRETS).get(kid)
        if material is None:
            # Name the kid only when it is one: a token without its `kid:` prefix, say a secret
            # pasted in by hand, must not be echoed.
            reason = (
                f"no secrets key with id {kid!r} in the keyring"
                if _is_kid(kid)
                else "it has no key id"
            )
            raise ConfigError(_unreadable(context, reason))
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError) as exc:  # ValueError: characters beyond ASCII
            raise ConfigError(_unreadable(context, "the token is not valid base64")) from exc
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise ConfigError(_unreadable(context, "the token is truncated"))
        try:
            return AESGCM(material).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context)
        except InvalidTag as exc:
            raise ConfigError(_unreadable(context, "it failed authentication")) from exc


def _is_kid(text: str) -> bool:
    return len(text) == 8 and all(c in "0123456789abcdef" for c in text)


def _unreadable(context: bytes, reason: str) -> str:
    """The error for a stored secret that does not open: its name, never its value."""
    if not context:
        return f"a stored secret does not decrypt: {reason}"
    ref = context.decode("utf-8", errors="replace")
    return (
        f"credentials.json: the credential {ref!r} does not decrypt: {reason}; store it again "
        f"with `gateway credentials set {ref}`"
    )


def load_keyring(directory: Path) -> Keyring:
    """Read every `*.key` file in the folder; none if there is no folder. Raises ConfigError on
    a bad file, or when the path is a file rather than a folder."""
    if not directory.is_dir():
        if directory.exists():
            raise ConfigError(f"{directory}: not a folder; the keys folder must be one")
        return Keyring(())
    return Keyring(tuple(read_key(p) for p in sorted(directory.glob("*.key"))))


def init_keyring(directory: Path, now: datetime) -> tuple[Keyring, list[KeyFile]]:
    """Load the keyring, creating a key for every purpose that has none (first start).

    Returns the keyring and the keys it created. Raises ConfigError on a bad key file or a
    keys folder that is not one (the folder is made or tightened to 0700: `prepare_keys_dir`).
    """
    prepare_keys_dir(directory)
    ring = load_keyring(directory)
    created = [new_key(p, now) for p in PURPOSES if not ring.of(p)]
    for key in created:
        _write_key_file(directory, key)
    return Keyring(ring.keys + tuple(created)), created
