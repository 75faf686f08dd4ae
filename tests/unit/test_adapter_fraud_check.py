"""Fraud-check adapter: only contract fields leave, transformed as the contract says; the
provider's answer becomes a normalized verdict or a ProviderResponseError, never anything else.
The sandbox provider's own parser and scorer stand in for the provider (fakes over mocks)."""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.adapters import InvalidOrderField, ProviderResponseError
from gateway.adapters.fraud_check import (
    Verdict,
    decode_response,
    encode_request,
    is_retryable_status,
    order_fields,
    score_path,
)
from gateway.contract_kinds import FraudDecision
from gateway.identifiers import Hashed, normalize_and_hash
from gateway.models import Transform
from gateway.sandbox.fraud import Score, parse_request, score_order

FIELDS = {
    "order_id": Transform.CLEAR,
    "amount": Transform.CLEAR,
    "currency": Transform.CLEAR,
    "card_bin": Transform.CLEAR,
    "email": Transform.SHA256,
    "phone": Transform.SHA256,
    "email_sha256": Transform.PREHASHED,
    "member_id": Transform.HMAC,
}
RAW_EMAIL = "DanaM@example.com"


def fake_hmac(value: str) -> str:
    return "k1:" + hashlib.sha256(b"key" + value.encode()).hexdigest()


def sha(kind: str, value: str) -> str:
    result = normalize_and_hash(kind, value)
    assert isinstance(result, Hashed)
    assert result.sha256 is not None
    return result.sha256


def test_only_contract_fields_leave_transformed() -> None:
    order = {
        "order_id": "o-1",
        "amount": 12800,
        "currency": "JPY",
        "card_bin": "411111",
        "card_number": "4111111111111111",
        "email": RAW_EMAIL,
        "phone": "090-1234-5678",
        "member_id": "m-42",
        "name": "Dana",
    }
    sent, dropped = order_fields(order, FIELDS, fake_hmac)
    assert sent == {
        "order_id": "o-1",
        "amount": 12800,
        "currency": "JPY",
        "card_bin": "411111",
        "email": "1df6b43bc68dd38eca94e6a65b4f466ae537b796c81a526918b40ac4a7b906c7",
        "phone": sha("phone", "+819012345678"),
        "member_id": fake_hmac("m-42"),
    }
    assert dropped == ["card_number", "name"]
    assert isinstance(sent["amount"], int)


def test_phone_region_and_prehashed() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    sent, dropped = order_fields(
        {"phone": "(800) 555-0100", "email_sha256": digest.upper(), "amount": 99.5},
        FIELDS,
        fake_hmac,
        region="US",
    )
    assert sent == {"phone": sha("phone", "+18005550100"), "email_sha256": digest, "amount": 99.5}
    assert dropped == []


@pytest.mark.parametrize(
    ("order", "fields", "field", "code"),
    [
        ({"email": "dana_at_example"}, FIELDS, "email", "invalid_email"),
        ({"phone": "12"}, FIELDS, "phone", "invalid_phone"),
        ({"email_sha256": RAW_EMAIL}, FIELDS, "email_sha256", "invalid_hash"),
        ({"email": 42}, FIELDS, "email", "not_a_string"),
        ({"member_id": None}, FIELDS, "member_id", "not_a_string"),
        ({"amount": float("nan")}, FIELDS, "amount", "not_finite"),
        ({"amount": float("inf")}, FIELDS, "amount", "not_finite"),
        ({"amount": True}, FIELDS, "amount", "not_a_scalar"),
        ({"amount": None}, FIELDS, "amount", "not_a_scalar"),
        ({"order_id": {"id": 1}}, FIELDS, "order_id", "not_a_scalar"),
        ({"card_bin": "411111"}, {"card_bin": Transform.SHA256}, "card_bin", "unknown_kind"),
    ],
)
def test_a_field_that_cannot_be_sent_is_an_error(
    order: dict[str, object], fields: dict[str, Transform], field: str, code: str
) -> None:
    with pytest.raises(InvalidOrderField) as raised:
        order_fields(order, fields, fake_hmac)
    assert (raised.value.field, raised.value.code) == (field, code)
    assert RAW_EMAIL not in str(raised.value)
    assert "dana_at_example" not in str(raised.value)


def test_request_is_what_the_provider_parses() -> None:
    sent, _ = order_fields({"order_id": "o-1", "amount": 12800, "email": RAW_EMAIL}, FIELDS, str)
    body = encode_request("chk-0001", sent)
    email = sent["email"]
    assert isinstance(email, str)
    assert body == (
        b'{"check_id":"chk-0001","order":{"order_id":"o-1","amount":12800,"email":"'
        + email.encode()
        + b'"}}'
    )
    assert parse_request(body) == ("chk-0001", sent)
    assert score_path == "/v1/scores"


def answer(**changes: Any) -> bytes:
    body: dict[str, Any] = {
        "reference": "fp_00ff00ff00ff00ff",
        "score": 812,
        "decision": "challenge",
        "reasons": [{"code": "velocity", "description": "Several orders ..."}],
    }
    body.update(changes)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def test_decode_a_verdict() -> None:
    assert decode_response(200, answer()) == Verdict(
        decision=FraudDecision.REVIEW,
        score=0.812,
        reasons=("velocity",),
        provider_ref="fp_00ff00ff00ff00ff",
    )
    verdict = decode_response(200, answer(decision="approve", score=0, reasons=[], extra=1))
    assert (verdict.decision, verdict.score, verdict.reasons) == (FraudDecision.ACCEPT, 0.0, ())
    verdict = decode_response(200, answer(decision="decline", score=1000))
    assert (verdict.decision, verdict.score) == (FraudDecision.DENY, 1.0)


@given(st.dictionaries(st.text(max_size=5), st.integers(0, 10**7) | st.text(max_size=8)))
def test_every_sandbox_verdict_decodes(order: dict[str, int | str]) -> None:
    score: Score = score_order(order)
    verdict = decode_response(200, json.dumps(score.as_json("fp_1a2b3c4d5e6f7a8b")).encode())
    mapping = {"approve": "accept", "challenge": "review", "decline": "deny"}
    assert verdict.decision == mapping[score.decision]
    assert verdict.score == score.score / 1000
    assert verdict.reasons == score.reasons


BAD_ANSWERS = [
    (b"", "not JSON"),
    (b"\xff\xfe", "not JSON"),
    (b"[]", "not a JSON object"),
    (answer(reference=...), "/reference is missing"),
    (answer(score=...), "/score is missing"),
    (answer(decision=...), "/decision is missing"),
    (answer(reasons=...), "/reasons is missing"),
    (answer(score=1001), "/score"),
    (answer(score=-1), "/score"),
    (answer(score=500.0), "/score"),
    (answer(score=True), "/score"),
    (answer(score="500"), "/score"),
    (answer(decision="accept"), "/decision"),
    (answer(decision=None), "/decision"),
    (answer(reference="ref_00ff"), "/reference"),
    (answer(reference="fp_"), "/reference"),
    (answer(reference=7), "/reference"),
    (answer(reasons="velocity"), "/reasons"),
    (answer(reasons=["velocity"]), "/reasons/0"),
    (answer(reasons=[{"code": "velocity"}]), "/reasons/0"),
    (answer(reasons=[{"code": "", "description": "x"}]), "/reasons/0"),
    (answer(reasons=[{"code": 1, "description": "x"}]), "/reasons/0"),
]


@pytest.mark.parametrize(("body", "fragment"), BAD_ANSWERS)
def test_a_malformed_answer_is_a_provider_error(body: bytes, fragment: str) -> None:
    with pytest.raises(ProviderResponseError) as raised:
        decode_response(200, body)
    assert fragment in raised.value.detail
    assert (raised.value.status, raised.value.retryable) == (200, False)
    assert "Several orders" not in str(raised.value)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (404, False), (408, True), (429, True), (500, True),
     (501, False), (502, True), (503, True), (504, True), (201, False), (302, False)],
)  # fmt: skip
def test_other_statuses(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable
    with pytest.raises(ProviderResponseError) as raised:
        decode_response(status, answer())
    assert (raised.value.status, raised.value.retryable) == (status, retryable)


@given(st.binary(max_size=64) | st.builds(lambda v: json.dumps(v).encode(), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                  max_size=3),
    max_leaves=8,
)))  # fmt: skip
def test_garbage_only_ever_raises_provider_response_error(body: bytes) -> None:
    with contextlib.suppress(ProviderResponseError):
        decode_response(200, body)
