"""Partner credentials: the secrets a contract names by `endpoint.credential_ref`.

Kept in `$GATEWAY_HOME/credentials.json` as `{ref: token}`, each token AES-256-GCM under the
keyring's secrets key with the ref as associated data (`Keyring.encrypt_secret`), so the file
holds no secret in clear and a token moved to another ref does not decrypt. Written only by
`gateway credentials set` (mode 0600), read once when the service starts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from gateway.errors import ConfigError
from gateway.keyring import Keyring

FILE_NAME = "credentials.json"


def credentials_path(home: Path) -> Path:
    return home / FILE_NAME


def _read(path: Path) -> dict[str, str]:
    """Raises ConfigError for a file that is not a JSON object of strings."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable credentials file") from exc
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ConfigError(f"{path}: not a credentials file ({{ref: token}})")
    return raw


def load_credentials(path: Path, keyring: Keyring) -> dict[str, str]:
    """Every stored credential, decrypted. Raises ConfigError (unreadable file, unknown key,
    altered token)."""
    return {
        ref: keyring.decrypt_secret(token, context=ref.encode()).decode()
        for ref, token in _read(path).items()
    }


def store_credential(path: Path, keyring: Keyring, ref: str, secret: str) -> None:
    """Add or replace one credential, atomically, the file readable by its owner only.
    Raises ConfigError."""
    stored: Mapping[str, str] = {
        **_read(path),
        ref: keyring.encrypt_secret(secret.encode(), context=ref.encode()),
    }
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # the home, if new: private
    temporary = path.with_suffix(".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as out:
        json.dump(dict(sorted(stored.items())), out, indent=2)
    os.replace(temporary, path)
