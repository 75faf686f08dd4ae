"""SHA-256 for short values, as fast as CPython offers it.

Google's guide: hashes are the hex SHA-256 of the UTF-8 bytes of the normalized value. On
CPython 3.11 with OpenSSL 3, building a `hashlib.sha256()` object costs more than hashing a
30-byte address, and a ten-million-row upload builds one per value; CPython's own built-in
SHA-256 module (what hashlib falls back to without OpenSSL) builds much faster: about 0.2 µs a
value less, measured by bench/identifiers.py. Same function, same digest: the constructor is
checked against hashlib on a test vector at import, and tests compare every hash with hashlib.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from typing import Any

# FIPS 180-4 example "abc" (the NIST test vector).
_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def _constructor() -> Callable[[bytes], Any]:
    for name in ("_sha256", "_sha2"):  # CPython <= 3.11, >= 3.12
        try:
            candidate: Callable[[bytes], Any] = importlib.import_module(name).sha256
        except (ImportError, AttributeError):
            continue
        if candidate(b"abc").hexdigest() == _ABC:
            return candidate
    return hashlib.sha256


sha256: Callable[[bytes], Any] = _constructor()


def sha256_hex(text: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 bytes of `text`."""
    digest: str = sha256(text.encode()).hexdigest()
    return digest
