"""The APPI Art. 33(5) disclosure report, from log entries built as the gateway builds them:
a provision, its delivery, the removal that a withdrawal queued (Art. 35) and its delivery."""

from __future__ import annotations

import pytest

from gateway.ledger.entries import Outcome
from gateway.web.routes_transfers import disclosure_report
from tests.integration.lifecycle_entries import (
    PURPOSE,
    at,
    indexed,
    lifecycle,
    outcome,
    provision,
)


def test_a_removed_provision_is_one_item_with_status_removed() -> None:
    report = disclosure_report("m-1", lifecycle())
    assert report["provisions"] == [
        {
            "transfer_id": "t-ingest",
            "date": "2026-11-24T12:00:00.000000Z",
            "recipient": report["provisions"][0]["recipient"],
            "purpose": PURPOSE,
            "items": ["email"],
            "legal_basis": "consent",
            "cross_border_basis": "foreign_consent",
            "exempt": False,
            "status": "removed",
            "status_date": "2026-11-24T13:01:00.000000Z",
            "removal": {
                "transfer_id": "t-remove",
                "date": "2026-11-24T13:00:00.000000Z",
                "outcome": "delivered",
                "outcome_date": "2026-11-24T13:01:00.000000Z",
            },
        }
    ]
    assert report["provisions"][0]["recipient"]["name"] == "Google LLC"
    assert [r["transfer_id"] for r in report["received"]] == ["check-1"]


@pytest.mark.parametrize(
    ("removal_outcomes", "status", "removal"),
    [
        (0, "delivered", None),  # delivered, no withdrawal yet
        (1, "delivered", "allowed"),  # removal queued: the partner still holds the data
    ],
)
def test_until_the_partner_acknowledges_the_removal_the_provision_stands(
    removal_outcomes: int, status: str, removal: str | None
) -> None:
    entries = lifecycle()[: 2 + removal_outcomes]
    (item,) = disclosure_report("m-1", entries)["provisions"]
    assert (item["status"], item["transfer_id"]) == (status, "t-ingest")
    assert (item["removal"] and item["removal"]["outcome"]) == removal


def test_a_failed_removal_leaves_the_provision_delivered_and_says_so() -> None:
    entries = lifecycle()[:3]
    entries.append(
        {
            "index": 3,
            **outcome("m-1", outcome=Outcome.FAILED, operation="remove", transfer_id="t-remove",
                      refers_to=2, when=at(62)),
        }
    )  # fmt: skip
    (item,) = disclosure_report("m-1", entries)["provisions"]
    assert item["status"] == "delivered"
    assert item["status_date"] == "2026-11-24T12:01:00.000000Z"
    assert item["removal"]["outcome"] == "failed"


def test_provisions_of_other_transfers_are_their_own_items() -> None:
    entries = lifecycle()[:4] + indexed([provision("m-1", "t-later", at(120))], first=4)
    report = disclosure_report("m-1", entries)
    assert [(p["transfer_id"], p["status"]) for p in report["provisions"]] == [
        ("t-ingest", "removed"),
        ("t-later", "allowed"),
    ]


def test_a_removal_whose_provision_is_past_retention_is_not_passed_off_as_a_provision() -> None:
    """The provision and delivery entries were purged (their retention ended first): the
    removal still shows that the partner held the data, and says nothing it does not know."""
    (item,) = disclosure_report("m-1", lifecycle()[2:4])["provisions"]
    assert item["transfer_id"] is None  # not the removal's own transfer
    assert (item["date"], item["items"]) == (None, None)
    assert item["status"] == "removed"
    assert item["removal"]["transfer_id"] == "t-remove"
