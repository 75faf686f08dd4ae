"""Fraud checks (role fraud): `POST /v1/fraud-checks`, synchronous, inside a checkout's budget.

The checks run over their own HTTP client session (`fraud_running`, a cleanup context of the
app): a keep-alive pool sized for the checkout's concurrency, apart from the delivery worker's,
so a bulk upload never queues a checkout behind it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Final

import aiohttp
from aiohttp import web

from gateway.delivery.transport import AiohttpTransport
from gateway.models import Role
from gateway.provisions.fraud import FraudCheckAnswer, FraudCheckBody, FraudChecks
from gateway.web.endpoints import Caller, Endpoint
from gateway.web.problems import json_response, read_model
from gateway.web.services import SERVICES

FRAUD_TEAM: Final = frozenset({Role.FRAUD})
CONNECTIONS: Final = 100  # keep-alive connections to fraud providers, all partners together

FRAUD_CHECKS: web.AppKey[FraudChecks] = web.AppKey("fraud_checks", FraudChecks)


async def fraud_running(app: web.Application) -> AsyncIterator[None]:
    """The fraud checks live as long as the app, over one client session of their own.
    Registered after the log's context, so it stops first and no check outlives the log."""
    services = app[SERVICES]
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None),  # each call gets its own budget
        connector=aiohttp.TCPConnector(limit=CONNECTIONS),
    ) as session:
        app[FRAUD_CHECKS] = FraudChecks(
            contracts=services.contracts,
            store=services.store,
            transport=AiohttpTransport(session),
            ledger=services.ledger,
            subject_key=services.subject_key,
            # An hmac field is the keyed pseudonym under the pseudonymization key, the same
            # HMAC-SHA256 the log uses for subject ids (models.Transform.HMAC).
            hmac=services.subject_key,
            credential=services.credential,
            clock=services.clock,
            monotonic=time.monotonic,
            new_id=services.new_id,
            default_region=services.settings.default_region,
        )
        yield


async def post_fraud_check(request: web.Request, caller: Caller) -> web.StreamResponse:
    started = time.monotonic()  # the provider's budget counts from here
    body = await read_model(request, FraudCheckBody)
    answer = await request.app[FRAUD_CHECKS].check(body, started=started)
    return json_response(answer)


ENDPOINTS = [
    Endpoint(
        method="POST",
        path="/v1/fraud-checks",
        handler=post_fraud_check,
        summary="Check an order with the fraud provider (synchronous; normalized verdict)",
        description=(
            "Sends the order to the partner's fraud provider under the contract's "
            "fraud_detection purpose (its legal basis, rationale and approver) and answers "
            "the provider's verdict normalized: decision accept, review or deny, score 0-1, "
            "the provider's reason codes and reference. Only the fields the contract lists "
            "leave, hashed or keyed as it says; other order fields are dropped and named in "
            "fields_dropped. The provider call has the contract's time budget (timeout_ms, "
            "default 800 ms, counted from the request's arrival) with at most one retry "
            "inside it, the check_id as its Idempotency-Key, and a circuit breaker per "
            "partner. Whenever the provider's verdict cannot be had (circuit open, timeout, "
            "unreachable, error, malformed answer) the answer is still 200: the contract's "
            "declared fallback (review by default) with fallback true, score and provider_ref "
            "null and a reason code. A check the policy refuses (e.g. the person asked to "
            "stop provision to this partner, Art. 35) sends nothing and is answered the same "
            "way, its reasons being the policy's codes: a checkout never waits on an error. "
            "The provision (Art. 29) and the verdict as a receipt (Art. 30) are recorded in "
            "the transfer log under transfer_id (= check_id) before the answer."
        ),
        tag="fraud",
        roles=FRAUD_TEAM,
        partner_scoped=False,  # fraud clients are not partner-listed (require_partner: senders)
        request_model=FraudCheckBody,
        response_model=FraudCheckAnswer,
        example_body={
            "partner": "sample-fraud-provider",
            "subject_id": "cust-000123",
            "order": {
                "order_id": "o-2026-000042",
                "amount": 12800,
                "currency": "JPY",
                "card_bin": "411111",
                "ip_address": "203.0.113.7",
                "email": "Dana.M@example.com",
                "phone": "090-1234-5678",
                "shipping_postal_code": "100-0001",
            },
        },
    ),
]
