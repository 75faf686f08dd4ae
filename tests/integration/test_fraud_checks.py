"""Fraud checks end to end over real sockets: gateway -> (recording proxy) -> sandbox provider.

Every test runs on both stores. The sandbox scores the exact order it received (SHA-256 of its
canonical JSON), so a score the test predicts from the order it expects to leave proves that
order, byte for byte, is what arrived; where the bytes themselves matter a recording proxy in
front of the sandbox keeps them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from gateway.contract_kinds import FraudDecision, FraudSettings
from gateway.contracts import PartnerContract
from gateway.errors import PROBLEM_MEDIA_TYPE, problem_type
from gateway.identifiers import Hashed, normalize_and_hash
from gateway.models import LegalBasis, Role
from gateway.provisions.fraud import FALLBACK_REASONS
from gateway.sandbox import FaultPlan
from gateway.sandbox.fraud import score_order
from tests.integration.conftest import Live

PARTNER = "sample-fraud-provider"
EMAIL = "Dana.Secret@Example.com"
PHONE = "090-1234-5678"
RECEIPT_ITEMS = ("decision", "score", "reasons", "provider_ref")
BANDS = {"approve": "accept", "challenge": "review", "decline": "deny"}


def order(n: int, **extra: Any) -> dict[str, Any]:
    return {"order_id": f"o-{n}", "amount": 12800, "currency": "JPY", "email": EMAIL, **extra}


def sha256_of(kind: str, value: str) -> str:
    result = normalize_and_hash(kind, value)
    assert isinstance(result, Hashed)
    assert result.sha256 is not None
    return result.sha256


def expected_sent(o: dict[str, Any]) -> dict[str, Any]:
    """What the sample contract lets out of `o`: its fields, email and phone as SHA-256."""
    clear = ("order_id", "amount", "currency", "card_bin", "ip_address", "shipping_postal_code")
    sent = {k: v for k, v in o.items() if k in clear}
    for kind in ("email", "phone"):
        if kind in o:
            sent[kind] = sha256_of(kind, o[kind])
    return sent


def order_in_band(band: str) -> dict[str, Any]:
    """An order the sandbox scores in `band` (approve, challenge, decline)."""
    for n in range(10_000):
        candidate = order(n)
        if score_order(expected_sent(candidate)).decision == band:
            return candidate
    raise AssertionError(f"no order in band {band}")


async def check(
    live: Live,
    o: dict[str, Any],
    *,
    subject: str = "cust-1",
    partner: str = PARTNER,
    role: Role = Role.FRAUD,
) -> tuple[int, dict[str, Any]]:
    body = {"partner": partner, "subject_id": subject, "order": o}
    resp = await live.api.call("POST", "/v1/fraud-checks", role, json=body)
    return resp.status, await resp.json()


async def entries(live: Live, transfer_id: str) -> list[dict[str, Any]]:
    leaves = await live.api.services.store.ledger_transfer(transfer_id)
    return [json.loads(leaf.leaf or b"{}") for leaf in leaves]


def use_contract(live: Live, **changes: Any) -> PartnerContract:
    """Swap the fraud contract for a copy with `changes` (the checks re-derive it)."""
    contracts = cast(dict[str, PartnerContract], live.api.services.contracts)
    contracts[PARTNER] = contracts[PARTNER].model_copy(update=changes)
    return contracts[PARTNER]


def provider_requests(live: Live) -> int:
    return int(live.sandbox.stats()["fraud"]["requests"])


@dataclass
class Seen:
    """What went through the recording proxy; `corrupt` makes it answer a non-verdict,
    `pieces` answer in that many chunks, a pause between them; `redirect` answer that
    status, pointing at the sandbox's own scoring URL (a real provider, were it followed)."""

    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    answers: list[bytes] = field(default_factory=list)
    corrupt: bool = False
    pieces: int = 1
    redirect: int | None = None


async def piecewise(
    request: web.Request, status: int, payload: bytes, pieces: int
) -> web.StreamResponse:
    """`payload` as a chunked answer in `pieces` writes, 50 ms apart."""
    response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    size = -(-len(payload) // pieces)
    for start in range(0, len(payload), size):
        await response.write(payload[start : start + size])
        await asyncio.sleep(0.05)
    await response.write_eof()
    return response


@contextlib.asynccontextmanager
async def recording_proxy(live: Live) -> AsyncIterator[Seen]:
    """A loopback proxy in front of the sandbox provider, and the contract pointed at it."""
    seen = Seen()
    async with aiohttp.ClientSession() as session:

        async def forward(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            seen.requests.append((dict(request.headers), body))
            url = live.sandbox_url + "/" + request.match_info["tail"]
            if seen.redirect is not None:
                return web.Response(status=seen.redirect, headers={"Location": url})
            wanted = ("Content-Type", "Idempotency-Key", "Authorization")
            headers = {k: request.headers[k] for k in wanted if k in request.headers}
            async with session.post(url, data=body, headers=headers) as answer:
                status, payload = answer.status, await answer.read()
            if seen.corrupt:
                status, payload = 200, b'{"score": "high"}'
            seen.answers.append(payload)
            if seen.pieces > 1:
                return await piecewise(request, status, payload, seen.pieces)
            return web.Response(status=status, body=payload, content_type="application/json")

        app = web.Application()
        app.router.add_post("/{tail:.*}", forward)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        try:
            contract = cast(dict[str, PartnerContract], live.api.services.contracts)[PARTNER]
            url = str(server.make_url("/fraud"))
            use_contract(live, endpoint=contract.endpoint.model_copy(update={"url": url}))
            yield seen
        finally:
            await server.close()


# --- verdicts


async def test_each_band_comes_back_normalized_and_is_what_the_provider_scored(
    live: Live,
) -> None:
    for band, decision in BANDS.items():
        o = order_in_band(band)
        expected = score_order(expected_sent(o))
        status, answer = await check(live, o)
        assert status == 200, answer
        assert answer["decision"] == decision
        assert answer["fallback"] is False
        assert answer["score"] == expected.score / 1000
        assert answer["reasons"] == list(expected.reasons)
        assert answer["provider_ref"].startswith("fp_")
        assert answer["transfer_id"] == answer["check_id"]
        assert answer["fields_dropped"] == []
        # What arrived was scored by the sandbox: the same score means the same order bytes.
        arrived = live.sandbox.accepted("fraud")[answer["check_id"]]
        assert arrived["score"] == expected.score
        assert arrived["reference"] == answer["provider_ref"]


async def test_only_contract_fields_leave_hashed_and_drops_are_named(live: Live) -> None:
    o = order(1, phone=PHONE, card_bin="411111", loyalty_tier="gold", device_id="d-1")
    async with recording_proxy(live) as seen:
        status, answer = await check(live, o)
    assert status == 200, answer
    assert answer["fields_dropped"] == ["loyalty_tier", "device_id"]
    assert len(seen.requests) == 1
    headers, raw = seen.requests[0]
    assert headers["Idempotency-Key"] == answer["check_id"]
    sent = json.loads(raw)
    assert sent["check_id"] == answer["check_id"]
    assert sent["order"] == expected_sent(o)
    allowed = live.api.services.contracts[PARTNER].purposes["fraud_detection"].fields
    assert set(sent["order"]) <= set(allowed)
    assert len(sent["order"]["email"]) == 64
    assert EMAIL not in raw.decode()
    assert PHONE not in raw.decode()
    assert "gold" not in raw.decode()


async def test_the_provision_and_the_receipt_are_both_logged(live: Live) -> None:
    async with recording_proxy(live) as seen:
        status, answer = await check(live, order(2, loyalty_tier="gold"))
    assert status == 200
    assert answer["fallback"] is False
    logged = await entries(live, answer["check_id"])
    # The provision first, in the log before the request left; then its outcome and the
    # verdict's receipt, in the log before the answer.
    assert [e["outcome"] for e in logged] == ["allowed", "delivered", "received"]
    provision, outcome, receipt = logged
    _, raw = seen.requests[0]
    assert provision["payload_sha256"] == hashlib.sha256(raw).hexdigest()
    assert outcome["payload_sha256"] == provision["payload_sha256"]
    assert (outcome["operation"], outcome["delivery_id"]) == ("score", answer["check_id"])
    leaves = await live.api.services.store.ledger_transfer(answer["check_id"])
    assert outcome["refers_to"] == leaves[0].index
    assert provision["legal_basis"] == LegalBasis.PROTECT_LIFE_BODY_PROPERTY.value
    assert provision["exempt"] is True  # Art. 27(1)(ii): logged, flagged exempt (rule 7)
    assert provision["evidence"]["approver"].startswith("Hanako Sato")
    assert {i["field"] for i in provision["items"]} == {
        "order_id",
        "amount",
        "currency",
        "email",
    }
    assert provision["fields_dropped"] == ["loyalty_tier"]
    assert provision["subject"]["id"] == "cust-1"
    assert receipt["received"] == {"obtained_by": "fraud_check"}
    assert tuple(i["field"] for i in receipt["items"]) == RECEIPT_ITEMS
    assert receipt["payload_sha256"] == hashlib.sha256(seen.answers[0]).hexdigest()
    text = json.dumps(logged)
    assert EMAIL not in text
    assert EMAIL.lower() not in text


async def test_no_raw_email_or_phone_reaches_a_log_line(live: Live) -> None:
    live.sandbox.set_faults("fraud", FaultPlan(first_n=2, kinds=("500",)))
    with capture_logs() as logs:
        await check(live, order(3, phone=PHONE))  # a fallback: logged as a warning
        await check(live, order(4, phone=PHONE))
    text = json.dumps(logs, default=str)
    assert any(e.get("event") == "fraud_fallback" for e in logs)
    for secret in (EMAIL, EMAIL.lower(), PHONE, "dana.secret"):
        assert secret not in text


# --- time budget, retry, circuit breaker


async def test_a_slow_provider_gets_the_fallback_within_the_budget(live: Live) -> None:
    use_contract(live, fraud=FraudSettings(timeout_ms=400))
    live.sandbox.set_faults("fraud", FaultPlan(latency_ms=5000))
    started = time.monotonic()
    status, answer = await check(live, order(5))
    elapsed = time.monotonic() - started
    assert status == 200, answer
    assert answer["fallback"] is True
    assert answer["decision"] == "review"  # the contract's fallback
    assert answer["reasons"] == ["provider_timeout"]
    assert answer["score"] is None
    assert answer["provider_ref"] is None
    # Behaviour, not speed: the answer came long before the provider's 5 s (a loaded CI
    # machine may add its own delay; the checkout's budget is what the contract sets).
    assert elapsed < 2.5, elapsed
    logged = await entries(live, answer["check_id"])
    assert [e["outcome"] for e in logged] == ["allowed", "failed"]
    assert logged[0]["payload_sha256"] is not None  # it was sent, no answer came
    assert logged[1]["reasons"] == [
        {"code": "provider_timeout", "message": FALLBACK_REASONS["provider_timeout"]}
    ]


async def test_a_check_is_urgent_work_from_its_request_to_its_answer(live: Live) -> None:
    """While a check is under way an upload's work waits at its pauses (gateway.cooperative)."""
    priority = live.api.services.priority
    live.sandbox.set_faults("fraud", FaultPlan(latency_ms=300))
    under_way = asyncio.create_task(check(live, order(7)))
    for _ in range(500):  # until the request is in (the provider then holds it 300 ms)
        if priority.urgent_now:
            break
        await asyncio.sleep(0.01)
    assert priority.urgent_now == 1
    status, _ = await under_way
    assert status == 200
    assert priority.urgent_now == 0


async def test_the_declared_fallback_is_the_contracts(live: Live) -> None:
    use_contract(live, fraud=FraudSettings(timeout_ms=100, fallback=FraudDecision.DENY))
    live.sandbox.set_faults("fraud", FaultPlan(latency_ms=1000))
    _, answer = await check(live, order(6))
    assert (answer["decision"], answer["fallback"]) == ("deny", True)


async def test_a_503_is_retried_once_inside_the_budget(live: Live) -> None:
    live.sandbox.set_faults("fraud", FaultPlan(first_n=1, kinds=("503",)))
    o = order_in_band("approve")
    status, answer = await check(live, o)
    assert status == 200, answer
    assert answer["fallback"] is False
    assert answer["decision"] == "accept"
    stats = live.sandbox.stats()["fraud"]
    assert stats["requests"] == 2
    assert stats["faults"]["503"] == 1
    assert stats["accepted"] == 1
    assert [e["outcome"] for e in await entries(live, answer["check_id"])] == [
        "allowed",
        "delivered",
        "received",
    ]


async def test_two_failed_attempts_fall_back(live: Live) -> None:
    live.sandbox.set_faults("fraud", FaultPlan(first_n=2, kinds=("500", "drop")))
    _, answer = await check(live, order(7))
    assert answer["fallback"] is True
    assert answer["reasons"] == ["provider_unreachable"]  # the last attempt: dropped
    assert provider_requests(live) == 2  # never more than one retry


async def test_a_malformed_answer_is_a_failure_and_falls_back(live: Live) -> None:
    async with recording_proxy(live) as seen:
        seen.corrupt = True
        _, answer = await check(live, order(8))
    assert answer["fallback"] is True
    assert answer["reasons"] == ["provider_answer_invalid"]
    logged = await entries(live, answer["check_id"])
    assert [e["outcome"] for e in logged] == ["allowed", "failed"]


async def test_a_verdict_sent_in_pieces_is_the_verdict(live: Live) -> None:
    o = order_in_band("decline")
    async with recording_proxy(live) as seen:
        seen.pieces = 4
        status, answer = await check(live, o)
    assert status == 200, answer
    assert answer["fallback"] is False
    assert answer["decision"] == "deny"
    assert answer["score"] == score_order(expected_sent(o)).score / 1000
    logged = await entries(live, answer["check_id"])
    assert logged[2]["outcome"] == "received"
    assert logged[2]["payload_sha256"] == hashlib.sha256(seen.answers[0]).hexdigest()


async def test_a_redirect_is_not_followed_and_falls_back(live: Live) -> None:
    for n, status in enumerate((307, 302)):
        async with recording_proxy(live) as seen:
            seen.redirect = status
            _, answer = await check(live, order(50 + n))
        assert answer["fallback"] is True
        assert answer["reasons"] == ["provider_redirect"]
        assert len(seen.requests) == 1  # not retried
        logged = await entries(live, answer["check_id"])
        assert [e["outcome"] for e in logged] == ["allowed", "failed"]
        assert logged[1]["reasons"][-1]["code"] == "provider_redirect"
    assert provider_requests(live) == 0  # the sandbox it pointed at got nothing


async def test_the_breaker_opens_skips_the_provider_then_half_opens(live: Live) -> None:
    settings = FraudSettings(breaker_failures=2, breaker_reset_s=0.3)
    use_contract(live, fraud=settings)
    live.sandbox.set_faults("fraud", FaultPlan(first_n=100, kinds=("500",)))
    for n in range(2):
        _, answer = await check(live, order(10 + n))
        assert answer["reasons"] == ["provider_error"]
    before = provider_requests(live)
    assert before == 4  # two checks, each retried once
    _, answer = await check(live, order(12))
    assert answer["fallback"] is True
    assert answer["reasons"] == ["circuit_open"]
    assert provider_requests(live) == before  # not called at all
    logged = await entries(live, answer["check_id"])
    assert [e["outcome"] for e in logged] == ["failed"]
    assert logged[0]["payload_sha256"] is None  # nothing was sent
    await asyncio.sleep(0.35)
    live.sandbox.clear_faults()
    _, answer = await check(live, order(13))  # half-open: one trial goes out and succeeds
    assert answer["fallback"] is False
    assert provider_requests(live) == before + 1
    _, answer = await check(live, order(14))  # closed again
    assert answer["fallback"] is False


# --- policy


async def test_a_policy_denial_sends_nothing_and_answers_the_fallback(live: Live) -> None:
    contract = cast(dict[str, PartnerContract], live.api.services.contracts)[PARTNER]
    purpose = contract.purposes["fraud_detection"]
    consent_based = purpose.model_copy(update={"legal_bases": (LegalBasis.CONSENT,)})
    use_contract(live, purposes={"fraud_detection": consent_based})
    grant = {"notice_version": "n-1", "obtained_at": "2026-04-01T09:30:00+09:00", "channel": "web"}
    resp = await live.api.call("PUT", "/v1/subjects/cust-9/consents/fraud_detection", json=grant)
    assert resp.status == 201
    stop = {"partners": [PARTNER], "reason": "asked by phone"}
    resp = await live.api.call("POST", "/v1/subjects/cust-9/discontinuance", json=stop)
    assert resp.status in (200, 201), await resp.text()
    status, answer = await check(live, order(20, extra_field="x"), subject="cust-9")
    assert status == 200, answer
    assert answer["fallback"] is True
    assert answer["decision"] == "review"
    assert answer["reasons"] == ["discontinued"]  # Art. 35; fields_dropped is not a denial
    assert answer["provider_ref"] is None
    assert answer["score"] is None
    assert answer["fields_dropped"] == ["extra_field"]
    assert provider_requests(live) == 0
    logged = await entries(live, answer["check_id"])
    assert [e["outcome"] for e in logged] == ["denied"]
    assert logged[0]["items"] == []
    assert logged[0]["payload_sha256"] is None


async def test_an_exempt_basis_is_checked_despite_a_discontinuance(live: Live) -> None:
    stop = {"partners": "all", "reason": "asked by mail"}
    resp = await live.api.call("POST", "/v1/subjects/cust-8/discontinuance", json=stop)
    assert resp.status in (200, 201), await resp.text()
    _, answer = await check(live, order(21), subject="cust-8")
    assert answer["fallback"] is False  # Art. 27(1)(ii) applies whatever the person wants
    provision = (await entries(live, answer["check_id"]))[0]
    assert "discontinuance_exempt" in {r["code"] for r in provision["reasons"]}


# --- bad requests


def assert_problem(status: int, body: dict[str, Any], expected: int, slug: str) -> None:
    assert status == expected, body
    assert body["type"] == problem_type(slug)
    assert body["status"] == expected


async def test_bad_requests_are_problems_naming_the_field(live: Live) -> None:
    status, body = await check(live, order(30), partner="no-such-partner")
    assert_problem(status, body, 404, "not-found")
    assert body["errors"][0]["pointer"] == "/partner"
    status, body = await check(live, order(31), partner="google-customer-match")
    assert_problem(status, body, 422, "validation-error")
    assert body["errors"][0]["pointer"] == "/partner"
    missing = {k: v for k, v in order(32).items() if k != "order_id"}
    status, body = await check(live, missing)
    assert_problem(status, body, 422, "validation-error")
    assert [e["pointer"] for e in body["errors"]] == ["/order/order_id"]
    for bad, pointer in (
        ({"amount": "12800"}, "/order/amount"),
        ({"currency": "yen"}, "/order/currency"),
        ({"email": "dana-at-example"}, "/order/email"),
        ({"dana@example.com": 1}, "/order"),
    ):
        status, body = await check(live, {**order(33), **bad})
        assert_problem(status, body, 422, "validation-error")
        assert body["errors"][0]["pointer"] == pointer
        assert "dana-at-example" not in json.dumps(body)
    status, body = await check(live, order(34), role=Role.SENDER)
    assert_problem(status, body, 403, "forbidden")
    assert provider_requests(live) == 0


async def test_clear_fields_must_be_what_they_claim_and_values_are_never_echoed(
    live: Live,
) -> None:
    for bad, pointer in (
        ({"ip_address": "dana.m@example.com"}, "/order/ip_address"),
        ({"ip_address": "fe80::1%dana.m@example.com"}, "/order/ip_address"),
        ({"shipping_postal_code": "dana.m@example.com"}, "/order/shipping_postal_code"),
        ({"shipping_postal_code": "090-1234-5678"}, "/order/shipping_postal_code"),
        ({"shipping_postal_code": "0312345678"}, "/order/shipping_postal_code"),
    ):
        status, body = await check(live, {**order(35), **bad})
        assert_problem(status, body, 422, "validation-error")
        assert [e["pointer"] for e in body["errors"]] == [pointer]
        [value] = bad.values()
        assert value not in json.dumps(body)
    assert provider_requests(live) == 0


async def test_amount_messages_are_plain_and_the_same_for_every_non_finite(live: Live) -> None:
    for amount, message in (
        (float("nan"), "Input should be a finite number"),
        (float("inf"), "Input should be a finite number"),
        (float("-inf"), "Input should be a finite number"),
        ("12800", "must be a JSON number"),
    ):
        status, body = await check(live, {**order(36), "amount": amount})
        assert_problem(status, body, 422, "validation-error")
        assert body["errors"] == [{"pointer": "/order/amount", "detail": message}]


async def test_an_ip_address_leaves_in_its_canonical_form(live: Live) -> None:
    o = order(37, ip_address="2001:DB8:0:0:0:0:0:7", shipping_postal_code="100-0001")
    async with recording_proxy(live) as seen:
        status, answer = await check(live, o)
    assert status == 200, answer
    [(_, raw)] = seen.requests
    sent = json.loads(raw)["order"]
    assert sent["ip_address"] == "2001:db8::7"
    assert sent["shipping_postal_code"] == "100-0001"
    assert sent == expected_sent({**o, "ip_address": "2001:db8::7"})


async def test_problem_bodies_have_the_problem_media_type(live: Live) -> None:
    body = {"partner": "nope", "subject_id": "cust-1", "order": order(40)}
    resp = await live.api.call("POST", "/v1/fraud-checks", Role.FRAUD, json=body)
    assert resp.status == 404
    assert resp.content_type == PROBLEM_MEDIA_TYPE
