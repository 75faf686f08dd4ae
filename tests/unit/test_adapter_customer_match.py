"""Customer Match adapter: bodies valid against Google's Data Manager discovery document, the
direct encoder byte-identical to the reference one, members hashed as sent, streaming batches."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.adapters import InvalidBatch, InvalidMember
from gateway.adapters.customer_match import (
    MAX_MEMBERS,
    ConsentFlags,
    Member,
    batches,
    encode,
    encode_ingest,
    encode_ingest_parts,
    encode_remove,
    has_identifier,
    ingest_body,
    member_bytes,
    member_bytes_of,
    member_json,
    payload_sha256,
    remove_body,
    unsent_address_parts,
    unsent_fields,
)
from gateway.contract_kinds import AccountType, Destination
from gateway.identifiers import ISO_3166_ALPHA2, Hashed, normalize_and_hash

DISCOVERY = (
    Path(__file__).resolve().parents[3] / "shared/contracts/google-datamanager-v1.discovery.json"
)
# Google's field descriptions mark these "Required"; the shipped discovery copy has no
# descriptions, so the test states them (developers.google.com/data-manager/api/reference).
REQUIRED = {
    "IngestAudienceMembersRequest": ["destinations", "audienceMembers"],
    "RemoveAudienceMembersRequest": ["destinations", "audienceMembers"],
    "AddressInfo": ["givenName", "familyName", "regionCode", "postalCode"],
}


def _convert(schema: dict[str, Any]) -> dict[str, Any]:
    """A discovery schema as JSON Schema: unknown properties refused, enums kept."""
    if "$ref" in schema:
        return {"$ref": f"#/$defs/{schema['$ref']}"}
    kind = schema.get("type")
    if kind == "object":
        out: dict[str, Any] = {"type": "object", "additionalProperties": False}
        out["properties"] = {k: _convert(v) for k, v in schema.get("properties", {}).items()}
        if "additionalProperties" in schema:
            out["additionalProperties"] = _convert(schema["additionalProperties"])
        if schema.get("id") in REQUIRED:
            out["required"] = REQUIRED[schema["id"]]
        return out
    if kind == "array":
        return {"type": "array", "items": _convert(schema["items"])}
    if kind in ("string", "boolean", "integer", "number"):
        out = {"type": kind}
        if "enum" in schema:
            out["enum"] = schema["enum"]
        return out
    return {}


@functools.cache
def _discovery() -> dict[str, Any]:
    if not DISCOVERY.exists():
        pytest.skip(f"{DISCOVERY} missing (CI has ../shared beside the repository)")
    data: dict[str, Any] = json.loads(DISCOVERY.read_text(encoding="utf-8"))
    return data


@pytest.fixture
def discovery() -> dict[str, Any]:
    return _discovery()


@functools.cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    defs = {k: _convert(v) for k, v in _discovery()["schemas"].items()}
    return jsonschema.Draft202012Validator({"$defs": defs, "$ref": f"#/$defs/{name}"})


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


DEST = Destination(
    operating_account_type=AccountType.GOOGLE_ADS,
    operating_account_id="1234567890",
    login_account_type=AccountType.GOOGLE_ADS,
    login_account_id="9876543210",
    product_destination_id="5550001234",
    personalization_purpose="ad_personalization",
)
PLAIN_DEST = Destination(
    operating_account_type=AccountType.DATA_PARTNER,
    operating_account_id="42",
    product_destination_id="list-1",
)
FULL = Member(
    "m-1",
    email=h("dana@example.com"),
    phone=h("+819012345678"),
    given_name=h("dana"),
    family_name=h("yamada"),
    region_code="JP",
    postal_code="100-0001",
)
EMAIL_ONLY = Member("m-2", email=h("alex@example.com"))
ADDRESS_ONLY = Member(
    "m-3", given_name=h("a"), family_name=h("b"), region_code="US", postal_code="94045"
)


# --- the wire format


def test_ingest_body_is_the_documented_request() -> None:
    body = ingest_body(DEST, [FULL, EMAIL_ONLY], (True, False))
    assert body == {
        "destinations": [
            {
                "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
                "loginAccount": {"accountType": "GOOGLE_ADS", "accountId": "9876543210"},
                "productDestinationId": "5550001234",
            }
        ],
        "audienceMembers": [
            {
                "userData": {
                    "userIdentifiers": [
                        {"emailAddress": FULL.email},
                        {"phoneNumber": FULL.phone},
                        {
                            "address": {
                                "givenName": FULL.given_name,
                                "familyName": FULL.family_name,
                                "regionCode": "JP",
                                "postalCode": "100-0001",
                            }
                        },
                    ]
                }
            },
            {"userData": {"userIdentifiers": [{"emailAddress": EMAIL_ONLY.email}]}},
        ],
        "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_DENIED"},
        "encoding": "HEX",
        "termsOfService": {"customerMatchTermsOfServiceStatus": "ACCEPTED"},
    }


def test_remove_body_has_no_consent_and_no_terms() -> None:
    body = remove_body(PLAIN_DEST, [ADDRESS_ONLY])
    assert list(body) == ["destinations", "audienceMembers", "encoding"]
    assert body["destinations"] == [
        {
            "operatingAccount": {"accountType": "DATA_PARTNER", "accountId": "42"},
            "productDestinationId": "list-1",
        }
    ]
    assert json.loads(encode_remove(PLAIN_DEST, [ADDRESS_ONLY])) == body
    assert encode_remove(PLAIN_DEST, [ADDRESS_ONLY]) == encode(body)


@pytest.mark.parametrize(
    ("consent", "expected"),
    [
        ((True, True), ("CONSENT_GRANTED", "CONSENT_GRANTED")),
        ((True, False), ("CONSENT_GRANTED", "CONSENT_DENIED")),
        ((False, True), ("CONSENT_DENIED", "CONSENT_GRANTED")),
        ((False, False), ("CONSENT_DENIED", "CONSENT_DENIED")),
    ],
)
def test_consent_flags(consent: ConsentFlags, expected: tuple[str, str]) -> None:
    body = ingest_body(DEST, [EMAIL_ONLY], consent)
    assert (body["consent"]["adUserData"], body["consent"]["adPersonalization"]) == expected


def test_bodies_validate_against_the_discovery_document() -> None:
    members = [FULL, EMAIL_ONLY, ADDRESS_ONLY, Member("m-4", phone=h("+18005550100"))]
    for dest in (DEST, PLAIN_DEST):
        validator("IngestAudienceMembersRequest").validate(
            json.loads(encode_ingest(dest, members, (True, True)))
        )
        validator("RemoveAudienceMembersRequest").validate(json.loads(encode_remove(dest, members)))


def test_the_schema_check_catches_a_wrong_body() -> None:
    check = validator("IngestAudienceMembersRequest")
    body = ingest_body(DEST, [FULL], (True, True))
    for mutate in (
        lambda b: b.update(encoding="hex"),
        lambda b: b["audienceMembers"][0]["userData"].update(emails=[]),
        lambda b: b["audienceMembers"][0]["userData"]["userIdentifiers"][2]["address"].pop(
            "postalCode"
        ),
        lambda b: b["destinations"][0]["operatingAccount"].update(accountType="ADWORDS"),
        lambda b: b.pop("destinations"),
    ):
        wrong = json.loads(encode(body))
        mutate(wrong)
        assert not check.is_valid(wrong)


def test_account_types_are_the_discovery_enum(discovery: dict[str, Any]) -> None:
    account = discovery["schemas"]["ProductAccount"]["properties"]["accountType"]
    assert [t.value for t in AccountType] == account["enum"][1:]
    assert account["enum"][0] == "ACCOUNT_TYPE_UNSPECIFIED"


# --- members


def test_address_only_when_whole() -> None:
    partial = Member("m-5", email=h("x@example.com"), given_name=h("a"), region_code="JP")
    assert member_json(partial) == {
        "userData": {"userIdentifiers": [{"emailAddress": partial.email}]}
    }
    assert unsent_fields(partial) == ("given_name", "region_code")
    assert unsent_fields(FULL) == ()
    assert unsent_fields(EMAIL_ONLY) == ()
    assert has_identifier(ADDRESS_ONLY)
    assert not has_identifier(Member("m-6", given_name=h("a"), family_name=h("b")))


@given(st.lists(st.sampled_from([None, "x"]), min_size=4, max_size=4))
def test_unsent_address_parts_are_the_parts_of_a_member_not_sent(parts: list[Any]) -> None:
    given_name, family_name, region_code, postal_code = parts
    member = Member("m-7", h("x@example.com"), None, *parts)
    unsent = unsent_address_parts(given_name, family_name, region_code, postal_code)
    assert unsent == unsent_fields(member)
    names = ("given_name", "family_name", "region_code", "postal_code")
    given = tuple(name for name, value in zip(names, parts, strict=True) if value is not None)
    assert unsent == (() if len(given) == 4 else given)


def test_identifiers_from_the_identifier_profile_encode() -> None:
    # What gateway.identifiers produces is exactly what the adapter takes.
    hashed = normalize_and_hash("email", "DanaM@example.com")
    assert isinstance(hashed, Hashed)
    email = hashed.sha256
    assert email == "1df6b43bc68dd38eca94e6a65b4f466ae537b796c81a526918b40ac4a7b906c7"
    assert json.loads(member_bytes(Member("s", email=email))) == {
        "userData": {"userIdentifiers": [{"emailAddress": email}]}
    }


RAW_EMAIL = "dana@example.com"


@pytest.mark.parametrize(
    ("member", "field"),
    [
        (Member("s", email=RAW_EMAIL), "email"),
        (Member("s", email=h("x").upper()), "email"),
        (Member("s", email=h("x"), phone="+819012345678"), "phone"),
        (Member("s", phone=h("x")[:63]), "phone"),
        (Member("s", email=h("x") + "\n"), "email"),
        (Member("s", given_name="dana", family_name=h("b"), region_code="JP", postal_code="1"),
         "given_name"),
        (Member("s", given_name=h("a"), family_name=h("b"), region_code="jp", postal_code="1"),
         "region_code"),
        (Member("s", given_name=h("a"), family_name=h("b"), region_code="XX", postal_code="1"),
         "region_code"),
        (Member("s", given_name=h("a"), family_name=h("b"), region_code="JP", postal_code="1\n"),
         "postal_code"),
        (Member("s", given_name=h("a"), family_name=h("b"), region_code="JP", postal_code=""),
         "postal_code"),
        (Member("s"), "(member)"),
    ],
)  # fmt: skip
def test_a_member_not_in_its_sent_form_is_refused(member: Member, field: str) -> None:
    for build in (member_bytes, member_json, bytes_of_values):
        with pytest.raises(InvalidMember) as raised:
            build(member)
        assert raised.value.field == field
        assert RAW_EMAIL not in str(raised.value)


def test_payload_hash_is_of_the_bytes_sent() -> None:
    part = member_bytes(FULL)
    assert payload_sha256(part) == hashlib.sha256(part).hexdigest()
    request = encode_ingest(DEST, [EMAIL_ONLY, FULL], (True, True))
    assert part in request
    assert encode_ingest_parts(DEST, [member_bytes(EMAIL_ONLY), part], (True, True)) == request


def test_non_ascii_postal_codes_are_escaped_like_json() -> None:
    for postal in ('1"2', "1\\2", "１００－０００１", "x\u00e9"):
        member = Member("s", given_name=h("a"), family_name=h("b"), region_code="JP",
                        postal_code=postal)  # fmt: skip
        assert json.loads(member_bytes(member)) == member_json(member)
        assert encode_ingest(DEST, [member], (True, True)) == encode(
            ingest_body(DEST, [member], (True, True))
        )


@pytest.mark.parametrize("count", [0, MAX_MEMBERS + 1])
def test_batch_size_limits(count: int) -> None:
    members = [EMAIL_ONLY] * count
    for call in (
        lambda: ingest_body(DEST, members, (True, True)),
        lambda: encode_ingest(DEST, members, (True, True)),
        lambda: remove_body(DEST, members),
        lambda: encode_remove(DEST, members),
        lambda: encode_ingest_parts(DEST, [b"{}"] * count, (True, True)),
    ):
        with pytest.raises(InvalidBatch):
            call()


def test_a_full_batch_is_allowed() -> None:
    body = json.loads(encode_ingest(DEST, [EMAIL_ONLY] * MAX_MEMBERS, (False, False)))
    assert len(body["audienceMembers"]) == MAX_MEMBERS


# --- properties: the direct encoder is the reference encoder

hex64 = st.binary(min_size=1, max_size=8).map(lambda b: hashlib.sha256(b).hexdigest())
maybe_hex = st.none() | hex64
postal = st.text(
    st.characters(codec="utf-8", categories=["L", "N", "P", "S"], include_characters=" "),
    min_size=1,
    max_size=12,
)
members = st.builds(
    Member,
    subject_id=st.text(max_size=8),
    email=maybe_hex,
    phone=maybe_hex,
    given_name=maybe_hex,
    family_name=maybe_hex,
    region_code=st.none() | st.sampled_from(sorted(ISO_3166_ALPHA2)),
    postal_code=st.none() | postal,
).filter(has_identifier)
consents = st.tuples(st.booleans(), st.booleans())


@given(st.lists(members, min_size=1, max_size=20), consents)
def test_encode_ingest_is_ingest_body(batch: list[Member], consent: ConsentFlags) -> None:
    raw = encode_ingest(DEST, batch, consent)
    assert json.loads(raw) == ingest_body(DEST, batch, consent)
    assert raw == encode(ingest_body(DEST, batch, consent))
    assert encode_remove(DEST, batch) == encode(remove_body(DEST, batch))


@given(members)
def test_member_bytes_is_member_json(member: Member) -> None:
    assert json.loads(member_bytes(member)) == member_json(member)


def bytes_of_values(m: Member) -> bytes:
    return member_bytes_of(
        m.email, m.phone, m.given_name, m.family_name, m.region_code, m.postal_code
    )


@given(members)
def test_member_bytes_of_the_values_is_member_bytes(member: Member) -> None:
    assert bytes_of_values(member) == member_bytes(member)


@given(members)
def test_every_body_validates(member: Member) -> None:
    validator("IngestAudienceMembersRequest").validate(
        json.loads(encode_ingest(PLAIN_DEST, [member], (True, False)))
    )


# --- batches

Tagged = tuple[Member, ConsentFlags]


def tagged(n: int, consent: ConsentFlags) -> list[Tagged]:
    return [(Member(f"{consent}-{i}", email=h(str(i))), consent) for i in range(n)]


@given(st.lists(consents, max_size=60), st.integers(1, 7))
def test_batches_are_homogeneous_bounded_and_complete(flags: list[ConsentFlags], size: int) -> None:
    stream = [(Member(str(i), email=h(str(i))), c) for i, c in enumerate(flags)]
    out = list(batches(stream, size))
    assert all(0 < len(batch) <= size for _, batch in out)
    for consent, batch in out:
        assert all(dict(stream)[m] == consent for m in batch)
    # Nothing lost or repeated; input order kept within each consent combination.
    for consent in set(flags):
        sent = [m for c, batch in out if c == consent for m in batch]
        assert sent == [m for m, c in stream if c == consent]
    # Only the last batch of each combination may be short.
    for consent in set(flags):
        sizes = [len(b) for c, b in out if c == consent]
        assert all(s == size for s in sizes[:-1])


def test_batches_stream_and_flush_in_consent_order() -> None:
    consumed = 0

    def source() -> Iterator[Tagged]:
        nonlocal consumed
        for item in tagged(2, (True, True)) + tagged(3, (False, True)) + tagged(1, (True, False)):
            consumed += 1
            yield item

    out = batches(source(), size=3)
    first = next(out)
    assert first[0] == (False, True)
    assert consumed == 5  # yielded as soon as full, before the input ended
    rest = list(out)
    assert [(c, len(b)) for c, b in rest] == [((True, False), 1), ((True, True), 2)]


def test_batches_default_to_the_api_limit() -> None:
    out = list(batches(tagged(MAX_MEMBERS + 1, (True, True))))
    assert [len(b) for _, b in out] == [MAX_MEMBERS, 1]


@pytest.mark.parametrize("size", [0, MAX_MEMBERS + 1])
def test_batch_size_out_of_range(size: int) -> None:
    with pytest.raises(InvalidBatch):
        list(batches([], size))
