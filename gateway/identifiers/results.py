"""What normalizing one identifier yields: a normalized value, a hash, or a reasoned rejection.

The result types are `NamedTuple`s with type-aware equality: immutable, and the cheapest such
object to build (measured: 0.6 µs against 1.1 µs for a frozen slots dataclass and 1.6 µs for a
pydantic model). The bulk paths (`hash_many`) return plain strings instead: a list of a million
live tuples also makes the garbage collector re-scan them as it grows.

A `Rejected` carries a stable `code` and a `message` that never contains the raw value: both may
reach logs and API responses (house rule 10: never log a raw identifier).
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from gateway.errors import GatewayError


class Reason(StrEnum):
    """Why a value was rejected. Stable strings: callers and partners' reports key on them."""

    EMPTY = "empty"
    INVALID_EMAIL = "invalid_email"
    INVALID_PHONE = "invalid_phone"
    INVALID_REGION = "invalid_region"
    INVALID_POSTAL_CODE = "invalid_postal_code"
    INVALID_HASH = "invalid_hash"


class UnknownKind(GatewayError, ValueError):
    """`kind` names no identifier field of the profile: the caller's bug, so it is raised."""

    def __init__(self, kind: str) -> None:
        # The kind is a field name chosen by the caller's code, never a person's data; still, cut
        # it short so a value passed by mistake in its place cannot reach a log whole.
        super().__init__(f"unknown identifier kind {kind[:32]!r}")
        self.kind = kind


class Normalized(NamedTuple):
    """A value normalized per the profile, not hashed."""

    kind: str
    value: str

    def __eq__(self, other: object) -> bool:
        return type(other) is Normalized and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return tuple.__hash__(self)


class Hashed(NamedTuple):
    """A normalized value and what leaves the gateway for it.

    `sha256` is the lowercase hex SHA-256 of the UTF-8 of `normalized` for hashed kinds, the
    caller's digest (lowercased) for `*_sha256` kinds, and None for kinds sent in clear.
    """

    kind: str
    normalized: str
    sha256: str | None

    def __eq__(self, other: object) -> bool:
        return type(other) is Hashed and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return tuple.__hash__(self)


class Rejected(NamedTuple):
    """A value the gateway will not send, with the reason. `message` never holds the value."""

    kind: str
    code: Reason
    message: str

    def __eq__(self, other: object) -> bool:
        return type(other) is Rejected and tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return tuple.__hash__(self)


MESSAGES: dict[Reason, str] = {
    Reason.EMPTY: "the value is empty after normalization",
    Reason.INVALID_EMAIL: "not an email address: needs one local@domain with a dot in the domain",
    Reason.INVALID_PHONE: "not a possible phone number for its country (E.164)",
    Reason.INVALID_REGION: "not an ISO 3166-1 alpha-2 region code",
    Reason.INVALID_POSTAL_CODE: "a US postal code must be 5 digits or 5+4 digits (12345-6789)",
    Reason.INVALID_HASH: "a SHA-256 must be exactly 64 hexadecimal characters",
}

# A plain field that received a digest: the hash would be hashed again and silently never match
# (design page: "a plain field never takes a hash").
HASH_IN_PLAIN_FIELD = "a SHA-256 was given in a plain field; send it in the *_sha256 field"
POSTAL_CODE_CONTROLS = "the postal code holds control or unencodable characters"


def rejection(kind: str, code: Reason, message: str | None = None) -> Rejected:
    """The rejection of a value of `kind` for `code`, with the standard message by default."""
    return Rejected(kind, code, message if message is not None else MESSAGES[code])
