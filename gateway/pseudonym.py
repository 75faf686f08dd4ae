"""Subject keys: keyed pseudonyms of subject ids for the transfer log and structured logs.

Design page (identifiers.md): subject keys are never hashes of raw identifiers, which anyone
holding a list of emails could recompute, but `HMAC-SHA256(pseudonymization key, subject_id)`
(RFC 2104), hex, prefixed with the key's id so keys can rotate: `"<key id>:<64 hex>"`.

Pure: the keyring (someone else's module) supplies the key bytes; nothing here reads a file or
logs. A retired key stays in the mapping given to `verify_subject_key`, so entries written
under it still verify after a rotation. Each key is keyed once (`subject_keyer`, a few kept):
the keyed HMAC is copied per subject, not rebuilt.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from functools import lru_cache

from gateway.errors import ConfigError

SEPARATOR = ":"
_HEX_LENGTH = 64
_KEYERS = 16  # keys kept keyed: the current one and a few retired ones being verified


def subject_key(subject_id: str, *, key_id: str, key: bytes) -> str:
    """`"<key_id>:<hex HMAC-SHA256 of the UTF-8 subject id under key>"`.

    Raises ConfigError for an empty key or a key id that is empty or contains ":" (the keyring
    should never hand out either); UnicodeEncodeError for a subject id with lone surrogates.
    """
    return subject_keyer(key_id, key)(subject_id)


@lru_cache(maxsize=_KEYERS)
def subject_keyer(key_id: str, key: bytes) -> Callable[[str], str]:
    """`subject_key` under one key, keyed once: a bulk upload takes a subject key per person,
    and keying the HMAC (two SHA-256 blocks) cost more than the rest of it.

    Raises ConfigError as subject_key does (and is not cached then).
    """
    if not key:
        raise ConfigError("pseudonymization key is empty")
    if not key_id or SEPARATOR in key_id:
        raise ConfigError("pseudonymization key id must be non-empty and contain no ':'")
    keyed = hmac.new(key, digestmod="sha256")  # RFC 2104, keyed once
    prefix = key_id + SEPARATOR

    def keyer(subject_id: str) -> str:
        h = keyed.copy()
        h.update(subject_id.encode())
        return prefix + h.hexdigest()

    return keyer


def key_id_of(value: str) -> str | None:
    """The key id a subject key was made with, or None if `value` is not a subject key."""
    key_id, sep, digest = value.partition(SEPARATOR)
    if not (key_id and sep and len(digest) == _HEX_LENGTH):
        return None
    return key_id


def verify_subject_key(subject_id: str, value: str, keys: Mapping[str, bytes]) -> bool:
    """True if `value` is the subject key of `subject_id` under one of `keys` (id -> key).

    `keys` holds the current and the retired keys; the key id prefix picks one. The digest is
    compared in constant time. False, never an exception, for a malformed value, an unknown
    key id, or a subject id that cannot be encoded.
    """
    key_id = key_id_of(value)
    if key_id is None or key_id not in keys or not value.isascii():
        return False
    try:
        expected = subject_key(subject_id, key_id=key_id, key=keys[key_id])
    except (ConfigError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(expected, value)
