"""Data Manager request checks: the schema from the discovery document plus the API's rules.
Every refusal names the wrong field the way Google's BadRequest.fieldViolations do."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from random import Random
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sandbox import google_rules
from gateway.sandbox.discovery import Check, DiscoveryDocument
from gateway.sandbox.examples import (
    example_ingest_request,
    example_remove_request,
    expected_digest,
    sha256_hex,
)
from gateway.sandbox.google_rules import Accepted, Refused, check_request
from gateway.sandbox.members import address_digest, hashed_digest
from gateway.sandbox.state import DEFAULT_DISCOVERY

DOC = DiscoveryDocument.load(DEFAULT_DISCOVERY)
INGEST = DOC.validator("IngestAudienceMembersRequest")
REMOVE = DOC.validator("RemoveAudienceMembersRequest")
HEX = sha256_hex("x")


def ingest(body: Any) -> Accepted | Refused:
    return check_request(json.dumps(body).encode(), INGEST, ingest=True)


def refused_fields(body: Any, validator: Check = INGEST, *, is_ingest: bool = True) -> list[str]:
    verdict = check_request(json.dumps(body).encode(), validator, ingest=is_ingest)
    assert isinstance(verdict, Refused), "expected the body to be refused"
    return [field for field, _ in verdict.violations]


def the_example() -> dict[str, Any]:
    """The body of the brief, verbatim (one member, every identifier kind)."""
    return {
        "destinations": [
            {
                "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
                "productDestinationId": "9876543210",
            }
        ],
        "audienceMembers": [
            {
                "userData": {
                    "userIdentifiers": [
                        {"emailAddress": HEX},
                        {"phoneNumber": HEX},
                        {
                            "address": {
                                "givenName": HEX,
                                "familyName": HEX,
                                "regionCode": "JP",
                                "postalCode": "1000001",
                            }
                        },
                    ]
                }
            }
        ],
        "consent": {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_DENIED"},
        "encoding": "HEX",
        "termsOfService": {"customerMatchTermsOfServiceStatus": "ACCEPTED"},
    }


def test_the_example_is_accepted_with_its_digest() -> None:
    verdict = ingest(the_example())
    assert verdict == Accepted(members=1, packed=bytes.fromhex(HEX[:16]), validate_only=False)


def test_remove_takes_no_terms_of_service() -> None:
    body = example_remove_request(3)
    verdict = check_request(json.dumps(body).encode(), REMOVE, ingest=False)
    assert isinstance(verdict, Accepted)
    assert verdict.members == 3
    body["termsOfService"] = {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
    assert refused_fields(body, REMOVE, is_ingest=False) == ["termsOfService"]


def test_per_member_consent_is_in_the_schema() -> None:
    body = the_example()
    body["audienceMembers"][0]["consent"] = {"adUserData": "CONSENT_DENIED"}
    assert isinstance(ingest(body), Accepted)


Mutation = Callable[[dict[str, Any]], None]
MEMBER = "audienceMembers[0]"
IDENTIFIERS = f"{MEMBER}.userData.userIdentifiers"


def _set(path: list[Any], value: Any) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        target = body
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value

    return mutate


def _drop(path: list[Any]) -> Mutation:
    def mutate(body: dict[str, Any]) -> None:
        target = body
        for part in path[:-1]:
            target = target[part]
        del target[path[-1]]

    return mutate


ids = ["audienceMembers", 0, "userData", "userIdentifiers"]
CASES: list[tuple[str, Mutation, str]] = [
    ("unknown field", _set([*ids, 0, "emailAddres"], HEX), f"{IDENTIFIERS}[0].emailAddres"),
    ("wrong enum", _set(["consent", "adUserData"], "GRANTED"), "consent.adUserData"),
    (
        "wrong type",
        _set(["destinations", 0, "productDestinationId"], 98),
        "destinations[0].productDestinationId",
    ),
    ("wrong type array", _set(["audienceMembers"], {}), "audienceMembers"),
    (
        "too many members",
        _set(["audienceMembers"], example_ingest_request(10_001)["audienceMembers"]),
        "audienceMembers",
    ),
    ("no members", _set(["audienceMembers"], []), "audienceMembers"),
    (
        "non-hex with HEX",
        _set([*ids, 0, "emailAddress"], "taro@example.com"),
        f"{IDENTIFIERS}[0].emailAddress",
    ),
    (
        "upper-case hex",
        _set([*ids, 1, "phoneNumber"], HEX.upper()),
        f"{IDENTIFIERS}[1].phoneNumber",
    ),
    (
        "short hex",
        _set([*ids, 2, "address", "givenName"], HEX[:63]),
        f"{IDENTIFIERS}[2].address.givenName",
    ),
    (
        "no region",
        _drop([*ids, 2, "address", "regionCode"]),
        f"{IDENTIFIERS}[2].address.regionCode",
    ),
    ("no ToS", _drop(["termsOfService"]), "termsOfService.customerMatchTermsOfServiceStatus"),
    (
        "ToS rejected",
        _set(["termsOfService", "customerMatchTermsOfServiceStatus"], "REJECTED"),
        "termsOfService.customerMatchTermsOfServiceStatus",
    ),
    ("no destination", _set(["destinations"], []), "destinations"),
    ("no destinations key", _drop(["destinations"]), "destinations"),
    (
        "no account id",
        _drop(["destinations", 0, "operatingAccount", "accountId"]),
        "destinations[0].operatingAccount.accountId",
    ),
    (
        "no account type",
        _drop(["destinations", 0, "operatingAccount", "accountType"]),
        "destinations[0].operatingAccount.accountType",
    ),
    (
        "no product destination",
        _drop(["destinations", 0, "productDestinationId"]),
        "destinations[0].productDestinationId",
    ),
    ("no encoding", _drop(["encoding"]), "encoding"),
    ("unspecified encoding", _set(["encoding"], "ENCODING_UNSPECIFIED"), "encoding"),
    ("no identifier", _set([*ids], []), IDENTIFIERS),
    ("empty member", _set(["audienceMembers", 0], {}), MEMBER),
    ("two identifiers in one", _set([*ids, 0, "phoneNumber"], HEX), f"{IDENTIFIERS}[0]"),
    ("two data kinds", _set(["audienceMembers", 0, "pairData"], {"pairIds": ["p"]}), MEMBER),
    ("eleven identifiers", _set([*ids], [{"emailAddress": HEX}] * 11), IDENTIFIERS),
    (
        "encrypted",
        _set(["encryptionInfo"], {"gcpWrappedKeyInfo": {"kekUri": "k"}}),
        "encryptionInfo",
    ),
]


@pytest.mark.parametrize(("name", "mutate", "field"), CASES, ids=[c[0] for c in CASES])
def test_each_broken_body_is_refused_naming_the_field(
    name: str, mutate: Mutation, field: str
) -> None:
    body = the_example()
    mutate(body)
    assert field in refused_fields(body)


def test_not_json_and_not_an_object_are_refused() -> None:
    for raw in (b"{", b"\xff", b"[]", b"null", b"1e999999"):
        verdict = check_request(raw, INGEST, ingest=True)
        assert isinstance(verdict, Refused)
        assert verdict.message.startswith("Invalid JSON payload received.")


def test_base64_encoding_is_checked_and_digested() -> None:
    body = the_example()
    b64 = "q83vASNFZ4mrze8BI0VniavN7wEjRWeJq83vASNFZ4k="
    for identifier in body["audienceMembers"][0]["userData"]["userIdentifiers"][:2]:
        identifier[next(iter(identifier))] = b64
    body["audienceMembers"][0]["userData"]["userIdentifiers"].pop()
    body["encoding"] = "BASE64"
    verdict = ingest(body)
    assert isinstance(verdict, Accepted)
    assert verdict.packed == hashed_digest(b64, "BASE64") == bytes.fromhex("abcdef0123456789")
    assert refused_fields({**body, "encoding": "HEX"}) == [
        f"{IDENTIFIERS}[0].emailAddress",
        f"{IDENTIFIERS}[1].phoneNumber",
    ]


def test_an_address_first_member_is_digested_from_its_match_fields() -> None:
    body = the_example()
    identifiers = body["audienceMembers"][0]["userData"]["userIdentifiers"]
    identifiers.reverse()
    verdict = ingest(body)
    assert isinstance(verdict, Accepted)
    assert verdict.packed == address_digest(identifiers[0]["address"])


def test_violations_are_capped_and_never_echo_values() -> None:
    body = example_ingest_request(100)
    for member in body["audienceMembers"]:
        member["userData"]["userIdentifiers"][0]["emailAddress"] = "hanako@example.com"
    verdict = ingest(body)
    assert isinstance(verdict, Refused)
    assert len(verdict.violations) == 20
    assert "hanako" not in json.dumps(verdict.violations)


def test_validate_only_is_reported() -> None:
    verdict = ingest({**the_example(), "validateOnly": True})
    assert isinstance(verdict, Accepted)
    assert verdict.validate_only


def test_ten_thousand_members_the_api_limit_are_accepted() -> None:
    # How fast: bench/upload.py's floor (no timing assertions in tests).
    raw = json.dumps(example_ingest_request(10_000)).encode()
    verdict = check_request(raw, INGEST, ingest=True)
    assert isinstance(verdict, Accepted)
    assert verdict.members == 10_000


# Property tests ---------------------------------------------------------------------------------

hex_digests = st.binary(min_size=32, max_size=32).map(bytes.hex)
consents = st.sampled_from(DOC.enum("Consent", "adUserData"))


@st.composite
def members(draw: st.DrawFn) -> dict[str, Any]:
    kinds = draw(
        st.lists(
            st.sampled_from(["emailAddress", "phoneNumber", "address"]), min_size=1, max_size=10
        )
    )
    identifiers: list[dict[str, Any]] = []
    for kind in kinds:
        if kind == "address":
            address = {
                "givenName": draw(hex_digests),
                "familyName": draw(hex_digests),
                "regionCode": draw(st.sampled_from(["JP", "US", "GB"])),
                "postalCode": draw(st.from_regex(r"[0-9]{3}-?[0-9]{4}", fullmatch=True)),
            }
            identifiers.append({"address": address})
        else:
            identifiers.append({kind: draw(hex_digests)})
    member: dict[str, Any] = {"userData": {"userIdentifiers": identifiers}}
    if draw(st.booleans()):
        member["consent"] = {"adUserData": draw(consents), "adPersonalization": draw(consents)}
    return member


@st.composite
def ingest_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body = the_example()
    body["audienceMembers"] = draw(st.lists(members(), min_size=1, max_size=5))
    body["destinations"][0]["operatingAccount"]["accountId"] = draw(
        st.from_regex(r"[0-9]{10}", fullmatch=True)
    )
    body["consent"] = {"adUserData": draw(consents), "adPersonalization": draw(consents)}
    return body


def first_digest(member: dict[str, Any]) -> bytes:
    first = member["userData"]["userIdentifiers"][0]
    if "address" in first:
        return address_digest(first["address"])
    return bytes.fromhex(next(iter(first.values()))[:16])


@given(ingest_bodies())
def test_accepted_bodies_round_trip_with_one_digest_per_member(body: dict[str, Any]) -> None:
    verdict = ingest(body)
    assert isinstance(verdict, Accepted)
    assert verdict.packed == b"".join(first_digest(m) for m in body["audienceMembers"])
    again = json.loads(json.dumps(body))
    assert again == body
    assert ingest(again) == verdict


REQUIRED = [
    ["destinations"],
    ["audienceMembers"],
    ["encoding"],
    ["termsOfService"],
    ["termsOfService", "customerMatchTermsOfServiceStatus"],
    ["destinations", 0, "productDestinationId"],
    ["destinations", 0, "operatingAccount"],
    ["destinations", 0, "operatingAccount", "accountId"],
    ["audienceMembers", 0, "userData"],
    ["audienceMembers", 0, "userData", "userIdentifiers"],
]


def objects_in(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The paths of every JSON object in `value`."""
    if isinstance(value, dict):
        out = [path]
        for key, item in value.items():
            out += objects_in(item, (*path, key))
        return out
    if isinstance(value, list):
        return [p for i, item in enumerate(value) for p in objects_in(item, (*path, i))]
    return []


def dotted(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(ingest_bodies(), st.sampled_from(REQUIRED))
def test_dropping_a_required_field_is_refused(body: dict[str, Any], path: list[Any]) -> None:
    _drop(path)(body)
    fields = refused_fields(body)
    assert any(
        f.startswith(dotted(tuple(path))) or dotted(tuple(path)).startswith(f) for f in fields
    ), fields


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(ingest_bodies(), st.data(), st.text(min_size=1, max_size=8))
def test_an_unknown_key_anywhere_is_refused(
    body: dict[str, Any], data: st.DataObject, name: str
) -> None:
    where = data.draw(st.sampled_from(objects_in(body)))
    mutated = copy.deepcopy(body)
    target = mutated
    for part in where:
        target = target[part]
    key = f"x{name}"  # no Data Manager field starts with a lower-case x
    target[key] = data.draw(st.one_of(st.none(), st.integers(), st.text()))
    assert refused_fields(mutated) == [dotted((*where, key))]


def test_expected_digest_helper_matches_the_sandbox() -> None:
    verdict = ingest(example_ingest_request(3, start=5))
    assert isinstance(verdict, Accepted)
    assert verdict.packed == b"".join(expected_digest(i) for i in range(5, 8))


identifier_values = st.one_of(
    hex_digests,
    hex_digests.map(str.upper),
    hex_digests.map(lambda h: h[:63]),
    hex_digests.map(lambda h: h[:63] + "é"),
    st.sampled_from(["", "taro@example.com"]),
    st.none(),
)


@st.composite
def shaky_members(draw: st.DrawFn) -> dict[str, Any]:
    """Members that are often subtly wrong: bad hashes, nulls, bad addresses, extra data."""
    identifiers: list[Any] = []
    kinds = st.sampled_from(["emailAddress", "phoneNumber", "address"])
    for kind in draw(st.lists(kinds, max_size=11)):
        if kind != "address":
            identifiers.append({kind: draw(identifier_values)})
            continue
        address = {
            "givenName": draw(identifier_values),
            "familyName": draw(identifier_values),
            "regionCode": draw(st.sampled_from(["JP", "jp", "J", "JPN", "", None])),
            "postalCode": draw(st.sampled_from(["1000001", "", None])),
        }
        identifiers.append({"address": {k: v for k, v in address.items() if v is not None}})
    if draw(st.booleans()) and identifiers:
        identifiers[0] = {**identifiers[0], "phoneNumber": HEX}
    member: dict[str, Any] = {"userData": {"userIdentifiers": identifiers}}
    extra = draw(st.sampled_from([None, "consent", "pairData", "nullPairData"]))
    if extra == "consent":
        member["consent"] = {"adUserData": "CONSENT_GRANTED"}
    elif extra == "pairData":
        member["pairData"] = {"pairIds": ["p"]}
    elif extra == "nullPairData":
        member["pairData"] = None
    return member


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(members(), max_size=2), st.lists(shaky_members(), max_size=3), st.randoms())
def test_fast_path_agrees_with_the_careful_path(
    clean: list[dict[str, Any]], shaky: list[dict[str, Any]], rng: Random
) -> None:
    members_ = clean + shaky
    rng.shuffle(members_)

    violations: list[tuple[str, str]] = []
    careful = b"".join(
        google_rules._check_member(m, i, google_rules._HASHED["HEX"], "HEX", violations)
        for i, m in enumerate(members_)
    )
    fast = google_rules._scan_hex(members_)
    if fast is not None:  # None: the fast path declined, the careful path decides
        assert violations == []
        assert fast == careful
    if all(m in clean for m in members_):
        assert fast is not None
