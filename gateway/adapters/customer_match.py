"""Customer Match through Google's Data Manager API v1: `audienceMembers:ingest` and `:remove`.

The bodies follow the discovery document (`shared/contracts/google-datamanager-v1.discovery.json`:
schemas IngestAudienceMembersRequest, RemoveAudienceMembersRequest, AudienceMember, UserData,
UserIdentifier, AddressInfo, Destination, ProductAccount, Consent, TermsOfService); the tests
validate every body against it. Members arrive normalized and hashed (gateway.identifiers):
hashed values are 64 lowercase hex, so the request says `"encoding": "HEX"`.

Two roads to the same bytes. `ingest_body` builds the JSON object, the readable reference;
`encode_ingest` writes the bytes directly, each member once through `member_bytes`, which is
also what `payload_sha256` hashes for the transfer log: the recorded hash is of the bytes sent.
`encode(ingest_body(...)) == encode_ingest(...)`, byte for byte (a property test holds it).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.adapters import InvalidBatch, InvalidMember
from gateway.contract_kinds import Destination
from gateway.identifiers import ISO_3166_ALPHA2

INGEST_PATH = "/v1/audienceMembers:ingest"
REMOVE_PATH = "/v1/audienceMembers:remove"
# IngestAudienceMembersRequest.audienceMembers: "At most 10000 AudienceMember resources can be
# sent in a single request" (Google's field description; the discovery copy here has none).
MAX_MEMBERS = 10_000

ConsentFlags = tuple[bool, bool]  # (ad_user_data, ad_personalization)
Json = dict[str, Any]

# AddressInfo: givenName, familyName, regionCode and postalCode are each "Required" in Google's
# field descriptions: an address is sent whole or not at all.
ADDRESS_FIELDS = ("given_name", "family_name", "region_code", "postal_code")
MEMBER_VALUES = ("email", "phone", *ADDRESS_FIELDS)  # member_bytes_of's parameters, in order

_GRANTED, _DENIED = "CONSENT_GRANTED", "CONSENT_DENIED"  # Consent.adUserData/adPersonalization
_TERMS = {"customerMatchTermsOfServiceStatus": "ACCEPTED"}  # TermsOfService
_MEMBERS_SLOT = b'"audienceMembers":[]'

_hex64 = re.compile(r"[0-9a-f]{64}").fullmatch  # fastest check measured (vs strip, translate)


@dataclass(frozen=True, slots=True)
class Member:
    """One person to upload. Values are already normalized and, but for region_code and
    postal_code (sent in clear), SHA-256 hex; None where the record has no such value."""

    subject_id: str
    email: str | None = None
    phone: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    region_code: str | None = None
    postal_code: str | None = None


def _has_address(m: Member) -> bool:
    return not (
        m.given_name is None or m.family_name is None or m.region_code is None
        or m.postal_code is None
    )  # fmt: skip


def has_identifier(m: Member) -> bool:
    """True when the member would carry at least one UserIdentifier."""
    return m.email is not None or m.phone is not None or _has_address(m)


def unsent_fields(m: Member) -> tuple[str, ...]:
    """Address parts present on a member whose address is incomplete: they are not sent (an
    AddressInfo needs all four), and the caller reports them instead of dropping them silently
    (the Customer Match planner: code `address_incomplete`)."""
    return unsent_address_parts(m.given_name, m.family_name, m.region_code, m.postal_code)


def unsent_address_parts(
    given_name: str | None,
    family_name: str | None,
    region_code: str | None,
    postal_code: str | None,
) -> tuple[str, ...]:
    """`unsent_fields` of the member with these address values, without building one: the
    names of the parts given (not None) when not all four are, in ADDRESS_FIELDS order."""
    parts = (given_name, family_name, region_code, postal_code)
    if None not in parts:
        return ()
    return tuple(
        name for name, value in zip(ADDRESS_FIELDS, parts, strict=True) if value is not None
    )


def _not_hashed(field: str) -> InvalidMember:
    # Never forward a value that is not a digest: it could be a raw email or phone.
    return InvalidMember(field, "must be a SHA-256 as 64 lowercase hex characters")


def _hashed(field: str, value: str) -> str:
    if _hex64(value) is None:
        raise _not_hashed(field)
    return value


def _region_code(value: str) -> str:
    # AddressInfo.regionCode: "The 2-letter region code in ISO-3166-1 alpha-2".
    if value not in ISO_3166_ALPHA2:
        raise InvalidMember("region_code", "must be an ISO 3166-1 alpha-2 code, uppercase")
    return value


def _postal_literal(value: str) -> str:
    """The JSON string literal of a postal code, exactly as `json.dumps(ensure_ascii=False)`."""
    if not value or not value.isprintable():
        raise InvalidMember("postal_code", "must be a non-empty printable postal code")
    # Printable ASCII but for '"' and '\\' needs no JSON escape (RFC 8259 §7).
    if value.isascii() and '"' not in value and "\\" not in value:
        return '"' + value + '"'
    return json.dumps(value, ensure_ascii=False)


def _no_identifier() -> InvalidMember:
    return InvalidMember("(member)", "no identifier: needs email, phone or a whole address")


def member_json(m: Member) -> Json:
    """The member's AudienceMember object: userData.userIdentifiers holds one identifier per
    present email (emailAddress) and phone (phoneNumber), then an address when all four
    AddressInfo fields are present.

    Raises InvalidMember for a value not in its sent form, or a member with no identifier.
    """
    ids: list[Json] = []
    if m.email is not None:
        ids.append({"emailAddress": _hashed("email", m.email)})
    if m.phone is not None:
        ids.append({"phoneNumber": _hashed("phone", m.phone)})
    given, family, region, postal = m.given_name, m.family_name, m.region_code, m.postal_code
    if given is not None and family is not None and region is not None and postal is not None:
        _postal_literal(postal)  # the same check as member_bytes
        address = {
            "givenName": _hashed("given_name", given),
            "familyName": _hashed("family_name", family),
            "regionCode": _region_code(region),
            "postalCode": postal,
        }
        ids.append({"address": address})
    if not ids:
        raise _no_identifier()
    return {"userData": {"userIdentifiers": ids}}


def member_bytes(m: Member) -> bytes:
    """`member_json(m)` as the compact UTF-8 JSON placed in the request, written directly
    (the hot path: one call per member). Hash these bytes with `payload_sha256`.

    Raises InvalidMember, as member_json does.
    """
    return member_bytes_of(
        m.email, m.phone, m.given_name, m.family_name, m.region_code, m.postal_code
    )


def member_bytes_of(
    email: str | None = None,
    phone: str | None = None,
    given_name: str | None = None,
    family_name: str | None = None,
    region_code: str | None = None,
    postal_code: str | None = None,
) -> bytes:
    """`member_bytes` of the Member with these values, without building one (a planner has
    the values at hand, and a frozen dataclass costs as much to build as its bytes).

    Raises InvalidMember, as member_json does.
    """
    # Hex digests and the checked region code need no JSON escaping (RFC 8259 §7).
    if email is not None:
        if _hex64(email) is None:
            raise _not_hashed("email")
        ids = '{"emailAddress":"' + email + '"}'
        if phone is not None:
            if _hex64(phone) is None:
                raise _not_hashed("phone")
            ids += ',{"phoneNumber":"' + phone + '"}'
    elif phone is not None:
        if _hex64(phone) is None:
            raise _not_hashed("phone")
        ids = '{"phoneNumber":"' + phone + '"}'
    else:
        ids = ""
    given, family, region, postal = given_name, family_name, region_code, postal_code
    if given is not None and family is not None and region is not None and postal is not None:
        address = _address(given, family, region, postal)
        ids = ids + "," + address if ids else address
    elif not ids:
        raise _no_identifier()
    return ('{"userData":{"userIdentifiers":[' + ids + "]}}").encode()


def _address(given: str, family: str, region: str, postal: str) -> str:
    """An AddressInfo identifier, checked as member_json checks it. Raises InvalidMember."""
    if _hex64(given) is None:
        raise _not_hashed("given_name")
    if _hex64(family) is None:
        raise _not_hashed("family_name")
    if region not in ISO_3166_ALPHA2:
        _region_code(region)  # raises
    if postal.isascii() and '"' not in postal and "\\" not in postal and postal.isprintable():
        postal_json = '"' + postal + '"' if postal else _postal_literal(postal)
    else:
        postal_json = _postal_literal(postal)  # escapes, or raises
    return (
        f'{{"address":{{"givenName":"{given}","familyName":"{family}",'
        f'"regionCode":"{region}","postalCode":{postal_json}}}}}'
    )


def payload_sha256(member_json_bytes: bytes) -> str:
    """SHA-256 (lowercase hex) of one member's bytes as sent: give it `member_bytes(m)`."""
    return hashlib.sha256(member_json_bytes).hexdigest()


def destination_json(d: Destination) -> Json:
    """The contract's destination as a Data Manager `Destination` (ProductAccount per account)."""
    out: Json = {
        "operatingAccount": {
            "accountType": d.operating_account_type.value,
            "accountId": d.operating_account_id,
        }
    }
    if d.login_account_type is not None and d.login_account_id is not None:
        out["loginAccount"] = {
            "accountType": d.login_account_type.value,
            "accountId": d.login_account_id,
        }
    out["productDestinationId"] = d.product_destination_id
    return out


def consent_json(consent: ConsentFlags) -> Json:
    """Request-level `Consent`: one value for every member (requirements rule 14)."""
    ad_user_data, ad_personalization = consent
    return {
        "adUserData": _GRANTED if ad_user_data else _DENIED,
        "adPersonalization": _GRANTED if ad_personalization else _DENIED,
    }


def _check_size(count: int) -> None:
    # audienceMembers is "Required" and at most MAX_MEMBERS: the API refuses the whole request.
    if count == 0:
        raise InvalidBatch("an upload needs at least one member")
    if count > MAX_MEMBERS:
        raise InvalidBatch(f"{count} members: at most {MAX_MEMBERS} per request")


def _ingest_frame(destination: Destination, consent: ConsentFlags) -> Json:
    return {
        "destinations": [destination_json(destination)],
        "audienceMembers": [],
        "consent": consent_json(consent),
        "encoding": "HEX",
        "termsOfService": _TERMS,
    }


def _remove_frame(destination: Destination) -> Json:
    # RemoveAudienceMembersRequest has no consent and no termsOfService.
    return {
        "destinations": [destination_json(destination)],
        "audienceMembers": [],
        "encoding": "HEX",
    }


def ingest_body(destination: Destination, members: Sequence[Member], consent: ConsentFlags) -> Json:
    """An IngestAudienceMembersRequest. Raises InvalidBatch (0 or > MAX_MEMBERS members) or
    InvalidMember."""
    _check_size(len(members))
    return {**_ingest_frame(destination, consent), "audienceMembers": _members(members)}


def remove_body(destination: Destination, members: Sequence[Member]) -> Json:
    """A RemoveAudienceMembersRequest (APPI Art. 35: the partner's copy is removed too).
    Raises InvalidBatch or InvalidMember."""
    _check_size(len(members))
    return {**_remove_frame(destination), "audienceMembers": _members(members)}


def _members(members: Sequence[Member]) -> list[Json]:
    return [member_json(m) for m in members]


def encode(body: Json) -> bytes:
    """Compact JSON (no spaces), UTF-8, non-ASCII unescaped: RFC 8259 §8.1."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _with_parts(frame: Json, parts: Sequence[bytes]) -> bytes:
    _check_size(len(parts))
    # The frame's only empty audienceMembers array is where the members go: destination
    # strings are JSON-escaped, so none can hold this byte sequence.
    head, slot, tail = encode(frame).partition(_MEMBERS_SLOT)
    assert slot, "the request frame has an audienceMembers slot"
    # One join into one fresh buffer: joining the members first, then the frame around them,
    # allocates and copies the multi-megabyte body twice (measured 4x slower).
    pieces = [b","] * (2 * len(parts) + 1)
    pieces[0] = head + b'"audienceMembers":['
    pieces[1::2] = parts
    pieces[-1] = b"]" + tail
    return b"".join(pieces)


def encode_ingest_parts(
    destination: Destination, parts: Sequence[bytes], consent: ConsentFlags
) -> bytes:
    """The ingest request bytes around members already encoded by `member_bytes` (so a caller
    can hash each part for the log and send the very same bytes). Raises InvalidBatch."""
    return _with_parts(_ingest_frame(destination, consent), parts)


def encode_ingest(
    destination: Destination, members: Sequence[Member], consent: ConsentFlags
) -> bytes:
    """`encode(ingest_body(...))`, written directly. Raises InvalidBatch or InvalidMember."""
    _check_size(len(members))
    return encode_ingest_parts(destination, [member_bytes(m) for m in members], consent)


def encode_remove_parts(destination: Destination, parts: Sequence[bytes]) -> bytes:
    """The remove request bytes around `member_bytes` parts. Raises InvalidBatch."""
    return _with_parts(_remove_frame(destination), parts)


def encode_remove(destination: Destination, members: Sequence[Member]) -> bytes:
    """`encode(remove_body(...))`, written directly. Raises InvalidBatch or InvalidMember."""
    _check_size(len(members))
    return encode_remove_parts(destination, [member_bytes(m) for m in members])


def batches(
    members: Iterable[tuple[Member, ConsentFlags]], size: int = MAX_MEMBERS
) -> Iterator[tuple[ConsentFlags, list[Member]]]:
    """Consent-homogeneous batches of at most `size` members, in a stream.

    At most one open batch per consent combination (four), each yielded as soon as it is
    full; the partial ones at the end, in consent order (False before True, ad_user_data
    first). Members keep their input order within a batch. Raises InvalidBatch when `size` is
    not 1..MAX_MEMBERS.
    """
    if not 1 <= size <= MAX_MEMBERS:
        raise InvalidBatch(f"batch size must be 1..{MAX_MEMBERS}, not {size}")
    open_batches: dict[ConsentFlags, list[Member]] = {}
    for member, consent in members:
        batch = open_batches.get(consent)
        if batch is None:
            batch = open_batches[consent] = []
        batch.append(member)
        if len(batch) >= size:
            del open_batches[consent]
            yield consent, batch
    for key in sorted(open_batches):
        yield key, open_batches[key]
