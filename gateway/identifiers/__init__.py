"""Identifier normalization and hashing, profile `google` (design: shared/design/identifiers.md).

Google matches an uploaded SHA-256 against the SHA-256 of its own users' identifiers, so a value
normalized differently uploads without error and silently never matches. Every function here is
pure and raises nothing on bad input: a value that cannot be normalized comes back as a
`Rejected` with a stable reason code and a message that never contains the value. An unknown
`kind` is the caller's bug and raises `UnknownKind`.

    normalize("email", " DanaM@example.com")         -> Normalized("email", "danam@example.com")
    normalize_and_hash("phone", "090-1234-5678")      -> Hashed("phone", "+819012345678", "...")
    hash_many("email", values)                        -> ["<64 hex>", Rejected(...), ...]
    Hasher(default_region="JP")("phone", "090-1234-5678")   -> "<64 hex>"

`region` is the record's region (ISO 3166-1 alpha-2), used by `phone` (numbers without `+`)
and `postal_code` (US rule); without one, `default_region`, the gateway's setting, applies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gateway.identifiers import phone as _phone
from gateway.identifiers.digest import sha256 as _sha256
from gateway.identifiers.digest import sha256_hex
from gateway.identifiers.email import EmailHasher, hash_emails, normalize_email
from gateway.identifiers.regions import ISO_3166_ALPHA2, normalize_region
from gateway.identifiers.results import Hashed, Normalized, Reason, Rejected, UnknownKind
from gateway.identifiers.text import normalize_name, normalize_postal_code, normalize_prehashed
from gateway.models import Transform

__all__ = [
    "CLEAR_KINDS",
    "HASHED_KINDS",
    "ISO_3166_ALPHA2",
    "KINDS",
    "PREHASHED_KINDS",
    "PROFILES",
    "Hashed",
    "Hasher",
    "Normalized",
    "Reason",
    "Rejected",
    "UnknownKind",
    "hash_emails",
    "hash_many",
    "hash_phones",
    "normalize",
    "normalize_and_hash",
    "transform_for",
]

PROFILES: frozenset[str] = frozenset({"google"})

_Normalizer = Callable[[str, str], "str | Rejected"]  # (value, region) -> normalized | rejected
Sender = Callable[[str, "str | None"], "str | Rejected"]  # (value, region) -> what is sent


def _prehashed(kind: str) -> _Normalizer:
    return lambda value, _region: normalize_prehashed(value, kind)


# kind -> (normalizer, how it leaves the gateway, whether it reads the region)
_KINDS: dict[str, tuple[_Normalizer, Transform, bool]] = {
    "email": (lambda value, _region: normalize_email(value), Transform.SHA256, False),
    "phone": (_phone.normalize_phone, Transform.SHA256, True),
    "given_name": (
        lambda value, _region: normalize_name(value, "given_name"),
        Transform.SHA256,
        False,
    ),
    "family_name": (
        lambda value, _region: normalize_name(value, "family_name"),
        Transform.SHA256,
        False,
    ),
    "region_code": (lambda value, _region: normalize_region(value), Transform.CLEAR, False),
    "postal_code": (normalize_postal_code, Transform.CLEAR, True),
    "email_sha256": (_prehashed("email_sha256"), Transform.PREHASHED, False),
    "phone_sha256": (_prehashed("phone_sha256"), Transform.PREHASHED, False),
    "given_name_sha256": (_prehashed("given_name_sha256"), Transform.PREHASHED, False),
    "family_name_sha256": (_prehashed("family_name_sha256"), Transform.PREHASHED, False),
}

KINDS: frozenset[str] = frozenset(_KINDS)
HASHED_KINDS: frozenset[str] = frozenset(k for k, s in _KINDS.items() if s[1] is Transform.SHA256)
CLEAR_KINDS: frozenset[str] = frozenset(k for k, s in _KINDS.items() if s[1] is Transform.CLEAR)
PREHASHED_KINDS: frozenset[str] = frozenset(
    k for k, s in _KINDS.items() if s[1] is Transform.PREHASHED
)


def transform_for(kind: str) -> Transform:
    """How a value of `kind` leaves the gateway: SHA256, CLEAR or PREHASHED.

    Raises UnknownKind.
    """
    return _spec(kind)[1]


def normalize(
    kind: str, value: str, *, region: str | None = None, default_region: str = "JP"
) -> Normalized | Rejected:
    """`value` normalized per the `google` profile, or the reason it cannot be.

    Raises UnknownKind for a kind outside KINDS; nothing for any value.
    """
    normalizer, _, uses_region = _spec(kind)
    where = _region_for(kind, region, default_region) if uses_region else default_region
    if isinstance(where, Rejected):
        return where
    result = normalizer(value, where)
    return result if isinstance(result, Rejected) else Normalized(kind, result)


def normalize_and_hash(
    kind: str, value: str, *, region: str | None = None, default_region: str = "JP"
) -> Hashed | Rejected:
    """`normalize`, and the SHA-256 that is sent (None for kinds sent in clear).

    Raises UnknownKind for a kind outside KINDS; nothing for any value.
    """
    result = normalize(kind, value, region=region, default_region=default_region)
    if isinstance(result, Rejected):
        return result
    transform = _KINDS[kind][1]
    if transform is Transform.SHA256:
        return Hashed(kind, result.value, sha256_hex(result.value))
    return Hashed(kind, result.value, result.value if transform is Transform.PREHASHED else None)


def hash_many(
    kind: str, values: Iterable[str], *, region: str | None = None, default_region: str = "JP"
) -> list[str | Rejected]:
    """What is sent for each value, in order: the SHA-256 hex for hashed and pre-hashed kinds,
    the normalized value for clear kinds; or the value's rejection.

    The bulk path: same results as `normalize_and_hash` per value, without per-call overhead.
    Raises UnknownKind for a kind outside KINDS; nothing for any value.
    """
    normalizer, transform, uses_region = _spec(kind)
    if kind == "email":
        return hash_emails(values)
    where = _region_for(kind, region, default_region) if uses_region else default_region
    if isinstance(where, Rejected):
        return [where for _ in values]
    if kind == "phone":
        return _phone.hash_phones_in(values, where)
    results = [normalizer(value, where) for value in values]
    if transform is not Transform.SHA256:
        return results
    sha256 = _sha256
    return [r if isinstance(r, Rejected) else sha256(r.encode()).hexdigest() for r in results]


def hash_phones(
    values: Iterable[str], *, region: str | None = None, default_region: str = "JP"
) -> list[str | Rejected]:
    """`hash_many("phone", ...)`: the SHA-256 hex of each number's E.164, or its rejection."""
    return hash_many("phone", values, region=region, default_region=default_region)


class Hasher:
    """`hash_many` one value at a time, for callers that take values record by record (the
    customer-match planner): the same answer per value, and what the bulk path works out once
    per list (an email domain's shape, the region a value is read in) kept across calls.

        send = Hasher(default_region="JP").of("phone")
        send("090-1234-5678", None)                      -> "<64 hex>"
    """

    _MAX_REGIONS = 1_000  # regions are few; bound the cache anyway

    def __init__(self, *, default_region: str = "JP") -> None:
        self._default_region = default_region
        self._regions: dict[tuple[str, str | None], str | Rejected] = {}
        self._senders: dict[str, Sender] = {}

    def __call__(self, kind: str, value: str, region: str | None = None) -> str | Rejected:
        """What is sent for `value` of `kind`, read in `region` (else the default region).

        Raises UnknownKind for a kind outside KINDS; nothing for any value.
        """
        return self.of(kind)(value, region)

    def of(self, kind: str) -> Sender:
        """`self(kind, ...)` with the kind bound: (value, region) -> what is sent, or the
        value's rejection. Raises UnknownKind."""
        sender = self._senders.get(kind)
        if sender is None:
            sender = self._senders[kind] = self._bind(kind)
        return sender

    def _bind(self, kind: str) -> Sender:
        if kind == "email":  # read the same in every region
            return EmailHasher()
        normalizer, transform, uses_region = _spec(kind)
        hashed = transform is Transform.SHA256
        # Where a value without a region of its own is read (hash_many's `where`).
        default = self._region(kind, None) if uses_region else self._default_region
        region_of = self._region

        def send(value: str, region: str | None) -> str | Rejected:
            where = region_of(kind, region) if uses_region and region is not None else default
            if isinstance(where, Rejected):
                return where
            result = normalizer(value, where)
            if hashed and not isinstance(result, Rejected):
                digest: str = _sha256(result.encode()).hexdigest()
                return digest
            return result

        return send

    def _region(self, kind: str, region: str | None) -> str | Rejected:
        where = self._regions.get((kind, region))
        if where is None:
            where = _region_for(kind, region, self._default_region)
            if len(self._regions) < self._MAX_REGIONS:
                self._regions[kind, region] = where
        return where


def _spec(kind: str) -> tuple[_Normalizer, Transform, bool]:
    try:
        return _KINDS[kind]
    except KeyError:
        raise UnknownKind(kind) from None


def _region_for(kind: str, region: str | None, default_region: str) -> str | Rejected:
    """The record's region if it has one, else the default; an unknown code rejects the value."""
    result = normalize_region(region or default_region)
    if isinstance(result, Rejected):
        return Rejected(kind, Reason.INVALID_REGION, result.message)
    return result
