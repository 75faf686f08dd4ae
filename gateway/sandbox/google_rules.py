"""Data Manager `audienceMembers:ingest` / `:remove` checks: what the real API refuses with
400 INVALID_ARGUMENT. Pure: request bytes in, verdict out, so it can run in a worker thread.

First the body must match the discovery document's request schema (`discovery`); then the rules
the schema cannot express, from the Data Manager API reference and its proto definitions:

- `destinations`: at least one; each names `operatingAccount.accountId`, the account's type
  (`accountType`, or the deprecated `product`, equal when both are set) and a
  `productDestinationId`; a `loginAccount` or `linkedAccount`, when given, needs the same;
- `audienceMembers`: 1..10,000 per request; each member sets exactly one of its data fields
  (the proto's `oneof data`), and `userData` has 1..10 `userIdentifiers`, each setting exactly
  one of `emailAddress`, `phoneNumber`, `address` (the proto's `oneof identifier`);
- hashed values (`emailAddress`, `phoneNumber`, `address.givenName`, `address.familyName`) are
  SHA-256 digests in the request's `encoding`: HEX is 64 lowercase hex digits, BASE64 is the
  32 bytes in base64; `encoding` must be HEX or BASE64 when any is present;
- an address also needs `regionCode` (ISO 3166-1 alpha-2) and `postalCode`;
- ingest only: `termsOfService.customerMatchTermsOfServiceStatus` must be ACCEPTED;
- `encryptionInfo` is refused: the sandbox does not simulate encrypted uploads.

Violations name the field as Google's `BadRequest.fieldViolations` do and never echo a value.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from gateway.sandbox.discovery import Check, SchemaViolation
from gateway.sandbox.members import DIGEST_SIZE, address_digest, data_digest, hashed_digest

MAX_MEMBERS = 10_000  # audienceMembers: "at most 10000 members per request"
MAX_IDENTIFIERS = 10  # UserData.userIdentifiers: "at most 10"
MAX_VIOLATIONS = 20  # enough to fix a batch; a broken 10,000-member batch needs no 10,000 lines
# AudienceMember's `oneof data` (Consent and destinationReferences are outside the oneof).
MEMBER_DATA = frozenset(
    {
        "userData",
        "pairData",
        "mobileData",
        "userIdData",
        "ppidData",
        "partnerProvidedIdData",
        "googleUserIdData",
        "compositeData",
    }
)
_IDENTIFIER_KINDS = "exactly one of emailAddress, phoneNumber, address"
_HASHED = {
    "HEX": re.compile(r"[0-9a-f]{64}"),
    "BASE64": re.compile(r"[A-Za-z0-9+/_-]{43}=?"),
}
_REGION_CODE = re.compile(r"[A-Z]{2}")
_HEX_DIGITS = b"0123456789abcdef"
# AudienceMember fields that may accompany userData (outside the proto's `oneof data`).
_WITH_USER_DATA = frozenset({"userData", "consent", "destinationReferences"})
_NO_DIGEST = bytes(DIGEST_SIZE)

Violation = tuple[str, str]


@dataclass(frozen=True)
class Accepted:
    """A valid request: its member count and packed member digests (see `members`)."""

    members: int
    packed: bytes
    validate_only: bool


@dataclass(frozen=True)
class Refused:
    message: str
    violations: tuple[Violation, ...]


def check_request(body: bytes, validator: Check, *, ingest: bool) -> Accepted | Refused:
    """Parse and check one request body against its compiled schema and the rules above."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # ValueError covers bad UTF-8 too
        return Refused("Invalid JSON payload received.", ())
    try:
        validator(document)
    except SchemaViolation as exc:
        message = f"Invalid JSON payload received. {exc.description}"
        return Refused(message, ((exc.field, exc.description),) if exc.field else ())
    violations: list[Violation] = []
    _check_destinations(document.get("destinations"), violations)
    if ingest:
        _check_terms(document.get("termsOfService"), violations)
    if document.get("encryptionInfo") is not None:
        violations.append(("encryptionInfo", "the sandbox does not simulate encrypted uploads"))
    packed = _check_members(document.get("audienceMembers"), document.get("encoding"), violations)
    if violations:
        return Refused("Request contains an invalid argument.", tuple(violations[:MAX_VIOLATIONS]))
    return Accepted(
        members=len(packed) // DIGEST_SIZE,
        packed=packed,
        validate_only=document.get("validateOnly") is True,
    )


def _check_destinations(destinations: Any, out: list[Violation]) -> None:
    if not destinations:
        out.append(("destinations", "at least one destination is required"))
        return
    for i, destination in enumerate(destinations):
        where = f"destinations[{i}]"
        _check_account(destination.get("operatingAccount") or {}, f"{where}.operatingAccount", out)
        # loginAccount and linkedAccount are optional, but a ProductAccount that is given has
        # the same required fields (Data Manager REST reference, ProductAccount: "accountId:
        # Required"; "Either accountType or the deprecated product is required").
        for name in ("loginAccount", "linkedAccount"):
            account = destination.get(name)
            if account is not None:
                _check_account(account, f"{where}.{name}", out)
        if not destination.get("productDestinationId"):
            out.append((f"{where}.productDestinationId", "the destination id is required"))


def _check_account(account: Any, where: str, out: list[Violation]) -> None:
    if not account.get("accountId"):
        out.append((f"{where}.accountId", "the account id is required"))
    # accountType, or the deprecated `product` it replaces; the *_UNSPECIFIED zero value of a
    # proto enum means "not set".
    account_type = account.get("accountType") or "ACCOUNT_TYPE_UNSPECIFIED"
    product = account.get("product") or "PRODUCT_UNSPECIFIED"
    if account_type == "ACCOUNT_TYPE_UNSPECIFIED" and product == "PRODUCT_UNSPECIFIED":
        out.append((f"{where}.accountType", "the account type is required"))
    elif "UNSPECIFIED" not in account_type + product and account_type != product:
        # ProductAccount.accountType: "If both are set, the values must match."
        out.append((f"{where}.product", "must match accountType when both are set"))


def _check_terms(terms: Any, out: list[Violation]) -> None:
    if (terms or {}).get("customerMatchTermsOfServiceStatus") != "ACCEPTED":
        out.append(
            (
                "termsOfService.customerMatchTermsOfServiceStatus",
                "the Customer Match terms of service must be ACCEPTED to upload members",
            )
        )


def _check_members(members: Any, encoding: Any, out: list[Violation]) -> bytes:
    """Check every member; their packed digests (meaningless when `out` gained violations)."""
    if not members:
        out.append(("audienceMembers", "at least one audience member is required"))
        return b""
    if len(members) > MAX_MEMBERS:
        out.append(("audienceMembers", f"at most {MAX_MEMBERS} members per request"))
        return b""
    hashed = _HASHED.get(encoding)
    if hashed is None and any("userData" in member for member in members):
        out.append(("encoding", "must be HEX or BASE64 when user identifiers are sent"))
        return b""
    if encoding == "HEX":
        fast = _scan_hex(members)
        if fast is not None:
            return fast
    # The careful path names every wrong field; it also is the only path for BASE64.
    packed = bytearray()
    for i, member in enumerate(members):
        packed += _check_member(member, i, hashed, str(encoding), out)
        if len(out) >= MAX_VIOLATIONS:
            break
    return bytes(packed)


def _scan_hex(members: list[Any]) -> bytes | None:
    """The fast path for what the gateway sends, HEX user data: the packed digests if every
    member passes, else None (the careful path then says why). Checks what `_check_member`
    checks, but the hashes of all members at once: one C-level pass over their bytes instead
    of a regex per value (10,000 members: ~10 ms instead of ~90 ms)."""
    hashed: list[str] = []
    add = hashed.append
    packed = bytearray()
    try:
        for member in members:
            data = member.get("userData")
            if not data or not (len(member) == 1 or _WITH_USER_DATA.issuperset(member)):
                return None
            identifiers = data.get("userIdentifiers")
            if not identifiers or len(identifiers) > MAX_IDENTIFIERS:
                return None
            for identifier in identifiers:
                if len(identifier) != 1:
                    return None
                # The schema let through only emailAddress / phoneNumber (strings) and address.
                (value,) = identifier.values()
                if type(value) is str:
                    add(value)
                elif type(value) is dict and _address_fields_ok(value):
                    add(value.get("givenName") or "")
                    add(value.get("familyName") or "")
                else:
                    return None
            (value,) = identifiers[0].values()
            packed += bytes.fromhex(value[:16]) if type(value) is str else address_digest(value)
    except ValueError:  # bytes.fromhex: not hex
        return None
    return bytes(packed) if _all_sha256_hex(hashed) else None


def _all_sha256_hex(values: list[str]) -> bool:
    if values and set(map(len, values)) != {64}:
        return False
    try:
        joined = "".join(values).encode("ascii")
    except UnicodeEncodeError:
        return False
    return not joined.translate(None, _HEX_DIGITS)  # nothing left once hex digits are gone


def _address_fields_ok(address: Any) -> bool:
    region = address.get("regionCode") or ""
    # Same as _REGION_CODE ([A-Z]{2}) without a regex call per address.
    regional = len(region) == 2 and region.isascii() and region.isalpha() and region.isupper()
    return regional and bool(address.get("postalCode"))


def _check_member(
    member: Any, i: int, hashed: re.Pattern[str] | None, encoding: str, out: list[Violation]
) -> bytes:
    present = [key for key in MEMBER_DATA.intersection(member) if member[key] is not None]
    if len(present) != 1:
        problem = "only one kind of member data may be set" if present else "no identifier"
        out.append((f"audienceMembers[{i}]", problem))
        return _NO_DIGEST
    kind = present[0]
    data = member[kind]
    if kind != "userData" or hashed is None:
        if not any(data.values()):
            out.append((f"audienceMembers[{i}].{kind}", "at least one identifier is required"))
        return data_digest(data)
    identifiers = data.get("userIdentifiers")
    if not identifiers or len(identifiers) > MAX_IDENTIFIERS:
        where = f"audienceMembers[{i}].userData.userIdentifiers"
        out.append((where, f"between 1 and {MAX_IDENTIFIERS} user identifiers are required"))
        return _NO_DIGEST
    first = _check_identifier(identifiers[0], i, 0, hashed, encoding, out)
    for j in range(1, len(identifiers)):
        _check_identifier(identifiers[j], i, j, hashed, encoding, out)
    return first


def _check_identifier(
    identifier: Any, i: int, j: int, hashed: re.Pattern[str], encoding: str, out: list[Violation]
) -> bytes:
    if len(identifier) != 1 or None in identifier.values():
        identifier = {k: v for k, v in identifier.items() if v is not None}  # null is unset
        if len(identifier) != 1:
            out.append((_identifier_path(i, j), f"{_IDENTIFIER_KINDS} must be set"))
            return _NO_DIGEST
    ((kind, value),) = identifier.items()
    if kind == "address":
        return _check_address(value, i, j, hashed, encoding, out)
    if hashed.fullmatch(value) is None:
        out.append((f"{_identifier_path(i, j)}.{kind}", _not_hashed(encoding)))
        return _NO_DIGEST
    return hashed_digest(value, encoding)


def _check_address(
    address: Any, i: int, j: int, hashed: re.Pattern[str], encoding: str, out: list[Violation]
) -> bytes:
    where = f"{_identifier_path(i, j)}.address"
    for name in ("givenName", "familyName"):
        if hashed.fullmatch(address.get(name) or "") is None:
            out.append((f"{where}.{name}", _not_hashed(encoding)))
    if _REGION_CODE.fullmatch(address.get("regionCode") or "") is None:
        out.append((f"{where}.regionCode", "an ISO 3166-1 alpha-2 region code is required"))
    if not address.get("postalCode"):
        out.append((f"{where}.postalCode", "the postal code is required"))
    return address_digest(address)


def _identifier_path(i: int, j: int) -> str:
    return f"audienceMembers[{i}].userData.userIdentifiers[{j}]"


def _not_hashed(encoding: str) -> str:
    if encoding == "HEX":
        return "must be a SHA-256 hash: 64 lowercase hexadecimal digits"
    return "must be a SHA-256 hash: 32 bytes in base64"
