"""Simulated fraud-scoring provider (target "fraud"). The wire format is this project's own:

    POST /fraud/v1/scores
    Idempotency-Key: <optional; a repeat gets the first answer back>
    Authorization: Bearer <any; only its presence is recorded>
    Content-Type: application/json

    {"check_id": "chk-0001",
     "order": {"order_id": "o-1", "amount": 12800, "currency": "JPY", "card_bin": "411111",
               "email": "<sha256 hex>", "phone": "<sha256 hex>", "ip_address": "203.0.113.7",
               "shipping_postal_code": "1000001"}}

`check_id` is a non-empty string; `order` is a flat object whose values are strings or numbers
(no null, boolean, object or array), holding whatever fields the partner contract lets out.
`amount`, when present, is a number or a decimal string.

    200 {"reference": "fp_<16 hex>", "score": 0..1000,
         "decision": "approve" | "challenge" | "decline",
         "reasons": [{"code": "velocity", "description": "..."}]}
    400 {"error": "<what is wrong>"}      not JSON, check_id or order missing or malformed

Scoring is deterministic, so tests can predict it: score = the first 4 bytes (big-endian) of
SHA-256 over `json.dumps(order, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
in UTF-8, modulo 1001 (an RFC 8785-like canonical form; numbers as Python writes them). Bands:
score < 700 approve (no reasons), < 900 challenge (velocity), else decline (velocity,
bin_country_mismatch). An amount above 1,000,000 is always declined with reason amount_limit.
The `reference` is drawn from the sandbox's seeded generator.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from aiohttp import web

from gateway.sandbox.lifecycle import STATE
from gateway.sandbox.pipeline import Outcome, json_error, partner_route, respond_once, stored_json
from gateway.sandbox.state import FRAUD

PATH = "/fraud/v1/scores"
BODY_LIMIT = 1024 * 1024
AMOUNT_LIMIT = Decimal(1_000_000)
APPROVE_BELOW, CHALLENGE_BELOW = 700, 900
REASONS = {
    "velocity": "Several orders with these identifiers in a short time.",
    "bin_country_mismatch": "The card's issuing country differs from the shipping country.",
    "amount_limit": "The amount is above the automatic approval limit.",
}


class OrderRejected(ValueError):
    """The request body is not a valid score request; the message says why."""


@dataclass(frozen=True)
class Score:
    score: int
    decision: str
    reasons: tuple[str, ...]

    def as_json(self, reference: str) -> dict[str, Any]:
        reasons = [{"code": code, "description": REASONS[code]} for code in self.reasons]
        return {
            "reference": reference,
            "score": self.score,
            "decision": self.decision,
            "reasons": reasons,
        }


def score_order(order: Mapping[str, str | int | float]) -> Score:
    """The deterministic verdict on one order. Raises OrderRejected for a bad amount."""
    canonical = json.dumps(order, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode()).digest()
    score = int.from_bytes(digest[:4], "big") % 1001
    if "amount" in order and _amount(order["amount"]) > AMOUNT_LIMIT:
        return Score(score, "decline", ("amount_limit",))
    if score < APPROVE_BELOW:
        return Score(score, "approve", ())
    if score < CHALLENGE_BELOW:
        return Score(score, "challenge", ("velocity",))
    return Score(score, "decline", ("velocity", "bin_country_mismatch"))


def parse_request(body: bytes) -> tuple[str, dict[str, str | int | float]]:
    """(check_id, order) from a request body. Raises OrderRejected."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise OrderRejected("the body is not JSON") from exc
    if not isinstance(document, dict):
        raise OrderRejected("the body must be a JSON object")
    check_id, order = document.get("check_id"), document.get("order")
    if not isinstance(check_id, str) or not check_id:
        raise OrderRejected("check_id must be a non-empty string")
    if not isinstance(order, dict):
        raise OrderRejected("order must be an object")
    for name, value in order.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise OrderRejected(f"order.{name} must be a string or a number")
    if "amount" in order:
        _amount(order["amount"])
    return check_id, order


def _amount(value: str | int | float) -> Decimal:
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise OrderRejected("order.amount must be a number") from exc
    if not amount.is_finite() or (isinstance(value, float) and not math.isfinite(value)):
        raise OrderRejected("order.amount must be a finite number")
    return amount


async def _score(request: web.Request, body: bytes) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        check_id, order = parse_request(body)
        verdict = score_order(order)
    except OrderRejected as exc:
        state.reject(FRAUD)
        return json_error(400, str(exc))

    def process() -> Outcome:
        reference = state.new_token("fp_")
        record = {"check_id": check_id, "reference": reference, **_brief(verdict)}
        return stored_json(200, verdict.as_json(reference)), record, {"checks": 1}

    return respond_once(request, FRAUD, process)


def _brief(verdict: Score) -> dict[str, Any]:
    return {"score": verdict.score, "decision": verdict.decision}


def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, partner_route(FRAUD, _score, error=json_error, body_limit=BODY_LIMIT))
