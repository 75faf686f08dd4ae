"""What the Data Manager simulator keeps of the audience members it accepted: 8 bytes each.

A test proves that every record arrived exactly once by comparing multisets of member digests,
so the sandbox keeps one 8-byte digest per accepted member, packed into one `bytes` per request:
a million members cost 8 MB, not a million Python strings.

A member's digest is taken from its FIRST user identifier (what the gateway puts first, the
email address when the record has one):

- `emailAddress` / `phoneNumber`: the first 8 bytes of the SHA-256 digest it carries, i.e. for
  `encoding` HEX `bytes.fromhex(value[:16])`, for BASE64 the first 8 decoded bytes; so a test
  computes the same as `hashlib.sha256(normalized_email.encode()).digest()[:8]`;
- `address`: BLAKE2b-64 of `givenName|familyName|regionCode|postalCode`;
- a member without user data (pairData, mobileData, ...): BLAKE2b-64 of its canonical JSON.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

DIGEST_SIZE = 8
_URL_SAFE = str.maketrans("-_", "+/")
_ADDRESS_PARTS = ("givenName", "familyName", "regionCode", "postalCode")


@dataclass(frozen=True)
class MemberBatch:
    """The members one accepted Data Manager request carried, as packed 8-byte digests."""

    operation: str  # "ingest" or "remove"
    packed: bytes

    @property
    def count(self) -> int:
        return len(self.packed) // DIGEST_SIZE

    def __iter__(self) -> Iterator[bytes]:
        packed = self.packed
        for start in range(0, len(packed), DIGEST_SIZE):
            yield packed[start : start + DIGEST_SIZE]

    def digests(self) -> list[bytes]:
        """The member digests in request order (one per member, duplicates kept)."""
        return list(self)

    def as_json(self, *, digests: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"operation": self.operation, "members": self.count}
        if digests:
            out["digests"] = [d.hex() for d in self]
        return out


def hashed_digest(value: str, encoding: str) -> bytes:
    """The digest of a hashed identifier as sent (`encoding` HEX or BASE64). Raises ValueError
    when the value is not in that encoding."""
    if encoding == "HEX":
        return bytes.fromhex(value[: 2 * DIGEST_SIZE])
    padded = value.translate(_URL_SAFE) + "=" * (-len(value) % 4)  # both alphabets, as proto JSON
    try:
        return base64.b64decode(padded, validate=True)[:DIGEST_SIZE]
    except binascii.Error as exc:
        raise ValueError("not base64") from exc


def address_digest(address: Mapping[str, Any]) -> bytes:
    """The digest of an AddressInfo: BLAKE2b-64 over its four match fields."""
    joined = "|".join(str(address.get(part, "")) for part in _ADDRESS_PARTS)
    return hashlib.blake2b(joined.encode(), digest_size=DIGEST_SIZE).digest()


def data_digest(data: Any) -> bytes:
    """The digest of member data other than user identifiers: BLAKE2b-64 of canonical JSON."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(canonical.encode(), digest_size=DIGEST_SIZE).digest()
