"""Fraud scoring: deterministic from the order's canonical JSON, banded, amount-limited."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sandbox.fraud import OrderRejected, Score, parse_request, score_order

ORDER: dict[str, Any] = {
    "order_id": "o-1",
    "amount": 12800,
    "currency": "JPY",
    "card_bin": "411111",
    "email": hashlib.sha256(b"taro@example.com").hexdigest(),
    "ip_address": "203.0.113.7",
    "shipping_postal_code": "1000001",
}


def expected_score(order: dict[str, Any]) -> int:
    canonical = json.dumps(order, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:4], "big") % 1001


def test_score_is_the_documented_hash_and_key_order_does_not_matter() -> None:
    verdict = score_order(ORDER)
    assert verdict.score == expected_score(ORDER)
    assert score_order(dict(reversed(list(ORDER.items())))) == verdict


orders = st.dictionaries(
    st.sampled_from(["order_id", "currency", "card_bin", "email", "ip_address", "名前"]),
    st.one_of(st.text(max_size=20), st.integers(-(10**6), 10**6)),
    min_size=1,
)


@given(orders)
def test_decision_follows_the_score_band(order: dict[str, Any]) -> None:
    verdict = score_order(order)
    assert 0 <= verdict.score <= 1000
    if verdict.score < 700:
        assert verdict == Score(verdict.score, "approve", ())
    elif verdict.score < 900:
        assert verdict == Score(verdict.score, "challenge", ("velocity",))
    else:
        assert verdict == Score(verdict.score, "decline", ("velocity", "bin_country_mismatch"))


def test_every_band_is_reachable() -> None:
    decisions = {score_order({"order_id": f"o-{i}"}).decision for i in range(200)}
    assert decisions == {"approve", "challenge", "decline"}


@pytest.mark.parametrize("amount", [1_000_001, "1000000.01", 5e6])
def test_amounts_over_the_limit_are_always_declined(amount: Any) -> None:
    verdict = score_order({**ORDER, "amount": amount})
    assert verdict.decision == "decline"
    assert verdict.reasons == ("amount_limit",)
    assert verdict.as_json("fp_00")["reasons"][0]["code"] == "amount_limit"


def test_the_limit_itself_is_not_over_it() -> None:
    assert score_order({**ORDER, "amount": 1_000_000}).reasons != ("amount_limit",)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"order": {}}',
        b'{"check_id": "", "order": {}}',
        b'{"check_id": "c"}',
        b'{"check_id": "c", "order": []}',
        b'{"check_id": "c", "order": {"a": null}}',
        b'{"check_id": "c", "order": {"a": true}}',
        b'{"check_id": "c", "order": {"a": {"b": 1}}}',
        b'{"check_id": "c", "order": {"amount": "lots"}}',
        b'{"check_id": "c", "order": {"amount": "Infinity"}}',
    ],
)
def test_malformed_requests_are_rejected(body: bytes) -> None:
    with pytest.raises(OrderRejected):
        parse_request(body)


def test_a_valid_request_parses() -> None:
    body = json.dumps({"check_id": "chk-1", "order": ORDER}).encode()
    assert parse_request(body) == ("chk-1", ORDER)
