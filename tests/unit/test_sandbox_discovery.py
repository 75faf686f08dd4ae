"""The discovery-schema validator: generic over Google discovery schemas, fast, and shipped
with a byte copy of the contract's discovery document."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.sandbox.discovery import DiscoveryDocument, DiscoveryError, SchemaViolation
from gateway.sandbox.examples import example_ingest_request
from gateway.sandbox.state import DEFAULT_DISCOVERY

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "google-datamanager-v1.discovery.json"
CONTRACT = REPO.parent / "shared" / "contracts" / "google-datamanager-v1.discovery.json"

SYNTHETIC = {
    "schemas": {
        "Node": {
            "id": "Node",
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "Node"}},
                "count": {"type": "string", "format": "int64"},
                "small": {"type": "integer", "format": "int32"},
                "ratio": {"type": "number", "format": "double"},
                "flag": {"type": "boolean"},
                "when": {"type": "string", "format": "google-datetime"},
                "took": {"type": "string", "format": "google-duration"},
                "blob": {"type": "string", "format": "byte"},
                "color": {"type": "string", "enum": ["RED", "GREEN"]},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "anything": {"type": "any"},
            },
        }
    }
}


@pytest.fixture(scope="module")
def node() -> Any:
    return DiscoveryDocument(SYNTHETIC).validator("Node")


def violation(check: Any, value: Any) -> SchemaViolation:
    with pytest.raises(SchemaViolation) as caught:
        check(value)
    return caught.value


def test_package_and_fixture_copies_are_byte_identical_to_the_contract() -> None:
    shipped = DEFAULT_DISCOVERY.read_bytes()
    assert FIXTURE.read_bytes() == shipped
    if CONTRACT.exists():
        assert CONTRACT.read_bytes() == shipped


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"name": "a", "children": [{"name": "b", "children": []}]},
        {"count": "9223372036854775807", "small": 7},
        {"count": 12, "small": "-5", "ratio": "NaN"},
        {"ratio": 1, "flag": False, "color": "GREEN"},
        {"when": "2026-11-24T12:00:00.123456789Z", "took": "3.5s"},
        {"when": "2026-11-24t12:00:00+09:00"},
        {"blob": "aGVsbG8=", "labels": {"k": "v"}, "anything": [1, {"x": None}]},
        {"blob": "aGVsbG8", "name": None},  # unpadded base64; null means "not set"
    ],
)
def test_valid_values_pass(node: Any, value: Any) -> None:
    node(value)


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ([], ""),
        ({"nope": 1}, "nope"),
        ({"children": [{}, {"nope": 1}]}, "children[1].nope"),
        ({"children": [None]}, "children[0]"),
        ({"name": 5}, "name"),
        ({"count": "12a"}, "count"),
        ({"count": "9223372036854775808"}, "count"),
        ({"small": 2**31}, "small"),
        ({"small": True}, "small"),
        ({"small": 1.5}, "small"),
        ({"ratio": "1.2.3"}, "ratio"),
        ({"ratio": True}, "ratio"),
        ({"flag": "true"}, "flag"),
        ({"when": "2026-11-24 12:00:00Z"}, "when"),
        ({"when": "2026-13-01T00:00:00Z"}, "when"),
        ({"took": "3.5"}, "took"),
        ({"blob": "a"}, "blob"),
        ({"blob": "a$b="}, "blob"),
        ({"color": "BLUE"}, "color"),
        ({"color": 1}, "color"),
        ({"labels": {"k": 1}}, "labels.k"),
    ],
)
def test_invalid_values_name_the_field(node: Any, value: Any, field: str) -> None:
    assert violation(node, value).field == field


def test_descriptions_never_echo_the_value(node: Any) -> None:
    secret = "taro@example.com"
    for value in ({"color": secret}, {"count": secret}, {"when": secret}, {"small": secret}):
        assert secret not in violation(node, value).description


def test_unknown_schema_and_unsupported_type_are_discovery_errors() -> None:
    doc = DiscoveryDocument({"schemas": {"Odd": {"type": "tuple"}}})
    with pytest.raises(DiscoveryError):
        doc.validator("Missing")
    with pytest.raises(DiscoveryError):
        doc.validator("Odd")
    with pytest.raises(DiscoveryError):
        DiscoveryDocument({})


def test_unreadable_document_is_a_discovery_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(DiscoveryError):
        DiscoveryDocument.load(bad)
    with pytest.raises(DiscoveryError):
        DiscoveryDocument.load(tmp_path / "missing.json")


def test_methods_and_enums_come_from_the_document() -> None:
    doc = DiscoveryDocument.load(DEFAULT_DISCOVERY)
    ingest = doc.method("datamanager.audienceMembers.ingest")
    assert ingest["path"] == "v1/audienceMembers:ingest"
    assert ingest["request"] == {"$ref": "IngestAudienceMembersRequest"}
    assert doc.enum("Consent", "adUserData") == (
        "CONSENT_STATUS_UNSPECIFIED",
        "CONSENT_GRANTED",
        "CONSENT_DENIED",
    )
    with pytest.raises(DiscoveryError):
        doc.method("datamanager.nothing")


def test_every_schema_of_the_document_compiles() -> None:
    doc = DiscoveryDocument.load(DEFAULT_DISCOVERY)
    for name in json.loads(DEFAULT_DISCOVERY.read_bytes())["schemas"]:
        doc.validator(name)


def test_ten_thousand_members_validate() -> None:
    # How fast: bench/upload.py's floor (no timing assertions in tests).
    check = DiscoveryDocument.load(DEFAULT_DISCOVERY).validator("IngestAudienceMembersRequest")
    body = json.loads(json.dumps(example_ingest_request(10_000)))
    check(body)  # raises SchemaViolation on any fault
