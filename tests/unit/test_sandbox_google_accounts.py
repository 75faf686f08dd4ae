"""The sandbox refuses a ProductAccount without its required fields wherever one is given.

Data Manager REST reference, ProductAccount: "accountId: Required"; "accountType: ... Either
accountType or the deprecated product is required. If both are set, the values must match."
loginAccount and linkedAccount are optional in a Destination, but once given they are
ProductAccounts like operatingAccount.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.identifiers.digest import sha256_hex
from gateway.sandbox.discovery import DiscoveryDocument
from gateway.sandbox.google_rules import Accepted, Refused, check_request
from gateway.sandbox.state import DEFAULT_DISCOVERY

DOC = DiscoveryDocument.load(DEFAULT_DISCOVERY)
VALIDATORS = {
    True: DOC.validator("IngestAudienceMembersRequest"),
    False: DOC.validator("RemoveAudienceMembersRequest"),
}
HEX = sha256_hex("x")


def body(destination: dict[str, Any], *, ingest: bool) -> bytes:
    out: dict[str, Any] = {
        "destinations": [destination],
        "audienceMembers": [{"userData": {"userIdentifiers": [{"emailAddress": HEX}]}}],
        "encoding": "HEX",
    }
    if ingest:
        out["termsOfService"] = {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
    return json.dumps(out).encode()


def destination(**accounts: dict[str, str]) -> dict[str, Any]:
    return {
        "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
        **accounts,
        "productDestinationId": "5550001234",
    }


@pytest.mark.parametrize("ingest", [True, False])
@pytest.mark.parametrize(
    ("name", "account", "field"),
    [
        ("loginAccount", {"accountType": "GOOGLE_ADS"}, "destinations[0].loginAccount.accountId"),
        ("loginAccount", {"accountId": "1"}, "destinations[0].loginAccount.accountType"),
        ("linkedAccount", {"accountType": "GOOGLE_ADS"}, "destinations[0].linkedAccount.accountId"),
        (
            "linkedAccount",
            {"accountId": "1", "accountType": "ACCOUNT_TYPE_UNSPECIFIED"},
            "destinations[0].linkedAccount.accountType",
        ),
        (
            "loginAccount",
            {"accountId": "1", "accountType": "GOOGLE_ADS", "product": "DATA_PARTNER"},
            "destinations[0].loginAccount.product",
        ),
        (
            "operatingAccount",
            {"accountId": "1", "accountType": "GOOGLE_ADS", "product": "DATA_PARTNER"},
            "destinations[0].operatingAccount.product",
        ),
    ],
)
def test_an_incomplete_or_inconsistent_account_is_refused(
    ingest: bool, name: str, account: dict[str, str], field: str
) -> None:
    verdict = check_request(
        body(destination(**{name: account}), ingest=ingest), VALIDATORS[ingest], ingest=ingest
    )
    assert isinstance(verdict, Refused)
    assert field in [f for f, _ in verdict.violations]


@pytest.mark.parametrize("ingest", [True, False])
@pytest.mark.parametrize(
    "accounts",
    [
        {},
        {"loginAccount": {"accountType": "GOOGLE_ADS", "accountId": "9876543210"}},
        {"linkedAccount": {"product": "GOOGLE_ADS", "accountId": "1"}},
        {"loginAccount": {"accountType": "GOOGLE_ADS", "product": "GOOGLE_ADS", "accountId": "1"}},
    ],
)
def test_complete_accounts_are_accepted(ingest: bool, accounts: dict[str, Any]) -> None:
    verdict = check_request(
        body(destination(**accounts), ingest=ingest), VALIDATORS[ingest], ingest=ingest
    )
    assert isinstance(verdict, Accepted)
