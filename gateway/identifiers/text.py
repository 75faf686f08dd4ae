"""`given_name`, `family_name`, `postal_code` and the pre-hashed `*_sha256` fields.

Google's guide, "Format user data", names: lowercase, no punctuation, Unicode NFC; the design
page adds: runs of whitespace become one space, trimmed, empty after that: `empty`.
"""

from __future__ import annotations

import re
import string
import unicodedata

from gateway.identifiers.results import (
    HASH_IN_PLAIN_FIELD,
    POSTAL_CODE_CONTROLS,
    Reason,
    Rejected,
    rejection,
)

_HEX = frozenset("0123456789abcdefABCDEF")
_US_POSTAL = re.compile(r"[0-9]{5}(?:-[0-9]{4})?")

# What `_keep` drops, for the ASCII fast path: string.punctuation is exactly ASCII's P* and S*
# ("'", "-", "`", "^", ...), plus the control characters (C*) that are not whitespace.
_ASCII_CONTROLS = "".join(
    chr(c) for c in range(128) if not (chr(c).isprintable() or chr(c).isspace())
)
_ASCII_DROP = str.maketrans("", "", string.punctuation + _ASCII_CONTROLS)


def is_sha256_hex(value: str) -> bool:
    """True for exactly 64 hexadecimal characters."""
    return len(value) == 64 and _HEX.issuperset(value)


def normalize_name(value: str, kind: str) -> str | Rejected:
    """A given or family name: NFC, lowercase, no punctuation or symbols, single spaces."""
    if is_sha256_hex(value.strip()):
        return rejection(kind, Reason.INVALID_HASH, HASH_IN_PLAIN_FIELD)
    if value.isascii():
        text = " ".join(value.lower().translate(_ASCII_DROP).split())
    else:
        text = _fold_unicode_name(value)
    return text if text else rejection(kind, Reason.EMPTY)


def _fold_unicode_name(value: str) -> str:
    text = value
    # Removing characters can join a letter to a combining mark and lowercasing can decompose:
    # repeat until stable, so normalizing twice changes nothing (a property test holds it).
    for _ in range(4):
        folded = unicodedata.normalize("NFC", text).lower()
        folded = " ".join("".join(_keep(ch) for ch in folded).split())
        folded = unicodedata.normalize("NFC", folded)
        if folded == text:
            break
        text = folded
    return text


def _keep(ch: str) -> str:
    """`ch`, a space for whitespace, or "" for punctuation (P*), symbols (S*), controls (C*)."""
    if ch.isspace():
        return " "
    # Symbols go too: "`" or "´" typed for an apostrophe, "＆", emoji. Controls and lone
    # surrogates (C*) are never part of a name and cannot be hashed as UTF-8.
    return "" if unicodedata.category(ch)[0] in "PSC" else ch


def normalize_postal_code(value: str, region: str) -> str | Rejected:
    """Trimmed; for US, `12345` or `12345-6789` (Google's guide); elsewhere as given."""
    kind = "postal_code"
    text = value.strip() if value.isascii() else unicodedata.normalize("NFC", value).strip()
    if not text:
        return rejection(kind, Reason.EMPTY)
    if is_sha256_hex(text):
        return rejection(kind, Reason.INVALID_HASH, HASH_IN_PLAIN_FIELD)
    if region == "US" and not _US_POSTAL.fullmatch(text):
        return rejection(kind, Reason.INVALID_POSTAL_CODE)
    if not text.isprintable():
        # Controls or lone surrogates: not a postal code, and not encodable as UTF-8.
        return rejection(kind, Reason.INVALID_POSTAL_CODE, POSTAL_CODE_CONTROLS)
    return text


def normalize_prehashed(value: str, kind: str) -> str | Rejected:
    """A digest the caller computed: 64 hex characters, lowercased; else `invalid_hash`."""
    text = value.strip()
    if not text:
        return rejection(kind, Reason.EMPTY)
    if not is_sha256_hex(text):
        return rejection(kind, Reason.INVALID_HASH)
    return text.lower()
