"""Fraud check: our fraud provider's scoring call, encoded and decoded (no I/O).

    POST {endpoint}/v1/scores          Content-Type: application/json
    {"check_id": "<ours>", "order": {"<field>": <value>, ...}}

    200 {"reference": "fp_<hex>", "score": 0..1000,
         "decision": "approve" | "challenge" | "decline",
         "reasons": [{"code": "<code>", "description": "<text>"}, ...]}

The provider's sandbox (gateway/sandbox) implements the provider side of exactly this format.
Only the fields of the contract's fraud_detection purpose are sent, each transformed as the
contract says; the rest are dropped and reported (requirements rule 13). The verdict comes
back normalized to accept / review / deny and is what the gateway records as the receipt
(Art. 30): the provider's reference, its decision, its score and its reason codes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.adapters import InvalidOrderField, ProviderResponseError
from gateway.contract_kinds import FraudDecision
from gateway.http_retry import is_retryable_status
from gateway.identifiers import Rejected, UnknownKind, normalize_and_hash
from gateway.models import Transform

score_path = "/v1/scores"  # appended to the contract's endpoint.url

# The provider takes strings and numbers only: no null, boolean, object or array.
OrderValue = str | int | float

MAX_SCORE = 1000
_DECISIONS = {
    "approve": FraudDecision.ACCEPT,
    "challenge": FraudDecision.REVIEW,
    "decline": FraudDecision.DENY,
}
_REFERENCE = re.compile(r"fp_[0-9a-fA-F]{1,128}").fullmatch


@dataclass(frozen=True, slots=True)
class Verdict:
    """The provider's determination, normalized."""

    decision: FraudDecision
    score: float  # 0..1: the provider's 0..1000 score / 1000
    reasons: tuple[str, ...]  # the provider's reason codes, in its order
    provider_ref: str  # the provider's reference for this check ("fp_<hex>")


def order_fields(
    order: Mapping[str, object],
    fields: Mapping[str, Transform],
    hmac: Callable[[str], str],
    *,
    region: str | None = None,
    default_region: str = "JP",
) -> tuple[dict[str, OrderValue], list[str]]:
    """What is sent for `order`, and the names of the order's fields that are not sent.

    `fields` is the purpose's field table. sha256 and prehashed fields go through
    gateway.identifiers (`normalize_and_hash` with the field's name as its kind: email, phone,
    ...; `region` and `default_region` as there); hmac fields through `hmac` (the keyed
    pseudonym, passed in); clear fields as given (an amount stays a number). Contract fields
    absent from the order are not sent. Values are strings or numbers: the provider takes
    no null, boolean, object or array.

    Raises InvalidOrderField (naming the field, never its value): `code` is the identifier
    Reason for an email or phone that does not normalize, "not_a_string" for a non-string in a
    hashed or hmac field, "not_a_scalar" / "not_finite" for a clear value that is not a string
    or a finite number, "unknown_kind" for a sha256 field the identifier profile lacks.
    """
    sent: dict[str, OrderValue] = {}
    dropped: list[str] = []
    for name, value in order.items():
        transform = fields.get(name)
        if transform is None:
            dropped.append(name)
        elif transform is Transform.CLEAR:
            sent[name] = _clear(name, value)
        elif not isinstance(value, str):
            raise InvalidOrderField(name, "not_a_string", f"a {transform} field takes a string")
        elif transform is Transform.HMAC:
            sent[name] = hmac(value)
        else:
            sent[name] = _hashed(name, value, region, default_region)
    return sent, dropped


def _clear(name: str, value: object) -> OrderValue:
    # bool is an int in Python, but true/false is not a number to the provider.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidOrderField(name, "not_a_scalar", "a clear field takes a string or a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidOrderField(name, "not_finite", "NaN and infinity are not JSON numbers")
    return value


def _hashed(name: str, value: str, region: str | None, default_region: str) -> str:
    try:
        result = normalize_and_hash(name, value, region=region, default_region=default_region)
    except UnknownKind:
        raise InvalidOrderField(
            name, "unknown_kind", "not an identifier the hashing profile normalizes"
        ) from None
    if isinstance(result, Rejected):
        raise InvalidOrderField(name, str(result.code), result.message)
    assert result.sha256 is not None, "sha256 and prehashed kinds always carry a digest"
    return result.sha256


def encode_request(check_id: str, order_sent: Mapping[str, OrderValue]) -> bytes:
    """The POST body: compact UTF-8 JSON `{"check_id": ..., "order": {...}}`.

    Raises ValueError for a non-finite float (order_fields never returns one).
    """
    body = {"check_id": check_id, "order": dict(order_sent)}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def decode_response(status: int, body: bytes) -> Verdict:
    """The verdict in a 200 answer.

    Raises ProviderResponseError for any other status (`retryable` per is_retryable_status),
    a body that is not JSON, or a missing or malformed key: a non-integer or out-of-range
    score, an unknown decision, a reference not "fp_<hex>", reasons not a list of
    {"code": str, "description": str}. Keys beyond these are ignored. Messages name the key,
    never echo the body (it may describe a person).
    """
    if status != 200:
        raise ProviderResponseError("not 200", status=status, retryable=is_retryable_status(status))
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise ProviderResponseError("body is not JSON", status=status) from None
    if not isinstance(data, dict):
        raise ProviderResponseError("body is not a JSON object", status=status)
    return Verdict(
        decision=_decision(data),
        score=_score(data) / MAX_SCORE,
        reasons=_reasons(data),
        provider_ref=_reference(data),
    )


def _field(data: dict[str, Any], key: str) -> object:
    if key not in data:
        raise ProviderResponseError(f"/{key} is missing", status=200)
    return data[key]


def _decision(data: dict[str, Any]) -> FraudDecision:
    decision = _field(data, "decision")
    if not isinstance(decision, str) or decision not in _DECISIONS:
        raise ProviderResponseError("/decision is not approve, challenge or decline", status=200)
    return _DECISIONS[decision]


def _score(data: dict[str, Any]) -> int:
    score = _field(data, "score")
    # bool is an int in Python, not in JSON; 500.0 is not the integer the format promises.
    if type(score) is not int or not 0 <= score <= MAX_SCORE:
        raise ProviderResponseError(f"/score is not an integer 0..{MAX_SCORE}", status=200)
    return score


def _reference(data: dict[str, Any]) -> str:
    reference = _field(data, "reference")
    if not isinstance(reference, str) or _REFERENCE(reference) is None:
        raise ProviderResponseError("/reference is not fp_<hex>", status=200)
    return reference


def _reasons(data: dict[str, Any]) -> tuple[str, ...]:
    reasons = _field(data, "reasons")
    if not isinstance(reasons, list):
        raise ProviderResponseError("/reasons is not a list", status=200)
    codes: list[str] = []
    for index, reason in enumerate(reasons):
        ok = isinstance(reason, dict) and isinstance(reason.get("description"), str)
        code = reason.get("code") if isinstance(reason, dict) else None
        if not ok or not isinstance(code, str) or not code:
            raise ProviderResponseError(
                f"/reasons/{index} is not {{code, description}} strings", status=200
            )
        codes.append(code)
    return tuple(codes)
