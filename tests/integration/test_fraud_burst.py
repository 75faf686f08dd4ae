"""A burst of fraud checks against a healthy provider, over real sockets (QA's reproduction:
200 checks at once, a provider answering in 450 ms: 99 of them were answered
provider_timeout and the partner's breaker opened, though the provider answered every one
it was sent in time). The gateway's own limits are its own: a check beyond the partner's
limit of checks in flight is answered gateway_busy at once, unsent, and one the gateway itself
sent late is gateway_busy too; neither is held against the provider."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import Any, cast

import aiohttp
import pytest

from gateway.contract_kinds import FraudSettings
from gateway.contracts import PartnerContract
from gateway.delivery.breaker import BreakerState
from gateway.models import Role
from gateway.sandbox import FaultPlan
from gateway.web.routes_fraud import FRAUD_CHECKS, IN_FLIGHT_PER_PARTNER
from tests.integration.conftest import Live

PARTNER = "sample-fraud-provider"
CHECKS = 2 * IN_FLIGHT_PER_PARTNER
LATENCY_MS = 1100  # over half the budget: a check queued behind a full pool cannot make it
BUDGET_MS = 2000  # and a margin for a busy test loop, which serves the sandbox too


async def burst(live: Live, count: int) -> list[dict[str, Any]]:
    """`count` checks at once, each on its own connection (the test client's pool would
    queue them on our side of the socket, before the gateway's handler and its budget)."""
    url = str(live.api.http.make_url("/v1/fraud-checks"))
    headers = live.api.auth(Role.FRAUD)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(n: int) -> dict[str, Any]:
            order = {"order_id": f"o-{n}", "amount": 100, "currency": "JPY"}
            body = {"partner": PARTNER, "subject_id": f"cust-{n}", "order": order}
            async with session.post(url, json=body, headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                answer: dict[str, Any] = await resp.json()
                return answer

        return await asyncio.gather(*(one(n) for n in range(count)))


@pytest.mark.slow
async def test_a_burst_beyond_the_gateways_limit_does_not_open_a_healthy_providers_breaker(
    live: Live,
) -> None:
    contracts = cast(dict[str, PartnerContract], live.api.services.contracts)
    settings = FraudSettings(timeout_ms=BUDGET_MS, breaker_failures=5, breaker_reset_s=30.0)
    contracts[PARTNER] = contracts[PARTNER].model_copy(update={"fraud": settings})
    live.sandbox.set_faults("fraud", FaultPlan(latency_ms=LATENCY_MS))
    answers = await burst(live, CHECKS)
    outcomes = Counter("verdict" if not a["fallback"] else a["reasons"][0] for a in answers)
    assert set(outcomes) <= {"verdict", "gateway_busy"}, outcomes
    assert outcomes["verdict"] >= 1, outcomes
    app = live.api.http.app
    assert app is not None
    assert app[FRAUD_CHECKS].route(PARTNER).breaker.state is BreakerState.CLOSED
    for answer in [a for a in answers if a["fallback"]][:5]:
        leaves = await live.api.services.store.ledger_transfer(answer["check_id"])
        [provision] = [json.loads(leaf.leaf or b"{}") for leaf in leaves]
        assert provision["outcome"] == "failed"
        assert provision["reasons"][-1]["code"] == "gateway_busy"
    # The breaker still works: the provider's own failures open it.
    live.sandbox.set_faults("fraud", FaultPlan(first_n=100, kinds=("500",)))
    await burst(live, 5)
    assert app[FRAUD_CHECKS].route(PARTNER).breaker.state is BreakerState.OPEN
