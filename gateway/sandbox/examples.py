"""Valid Data Manager request bodies, as the gateway sends them: for tests, demos and benchmarks.

Every identifier is the SHA-256 (hex) of a made-up value derived from the member's index, so a
caller can predict each member's digest (`members`): `expected_digest(i)`.
"""

from __future__ import annotations

import hashlib
from typing import Any


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def example_email(i: int) -> str:
    return f"member{i}@example.com"


def example_member(i: int) -> dict[str, Any]:
    """Member `i`: hashed email first, then phone and address (all fictitious)."""
    address = {
        "givenName": sha256_hex(f"given{i}"),
        "familyName": sha256_hex(f"family{i}"),
        "regionCode": "JP",
        "postalCode": "1000001",
    }
    identifiers = [
        {"emailAddress": sha256_hex(example_email(i))},
        {"phoneNumber": sha256_hex(f"+8190{i:08d}")},
        {"address": address},
    ]
    return {"userData": {"userIdentifiers": identifiers}}


def expected_digest(i: int) -> bytes:
    """The 8-byte digest the sandbox records for `example_member(i)`."""
    return hashlib.sha256(example_email(i).encode()).digest()[:8]


def example_ingest_request(members: int = 1, *, start: int = 0) -> dict[str, Any]:
    """A valid `audienceMembers:ingest` body with members start..start+members-1."""
    body = example_remove_request(members, start=start)
    body["consent"] = {"adUserData": "CONSENT_GRANTED", "adPersonalization": "CONSENT_DENIED"}
    body["termsOfService"] = {"customerMatchTermsOfServiceStatus": "ACCEPTED"}
    return body


def example_remove_request(members: int = 1, *, start: int = 0) -> dict[str, Any]:
    """A valid `audienceMembers:remove` body (no consent, no terms of service)."""
    destination = {
        "operatingAccount": {"accountType": "GOOGLE_ADS", "accountId": "1234567890"},
        "productDestinationId": "9876543210",
    }
    return {
        "destinations": [destination],
        "audienceMembers": [example_member(i) for i in range(start, start + members)],
        "encoding": "HEX",
    }
