"""FraudChecks with a scripted transport and a hand-driven clock: the time budget each attempt
gets, one retry at most, the breaker counted once per check, and what is recorded. No sockets:
the integration tests (tests/integration/test_fraud_checks.py) do the same over real ones."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from gateway.contract_kinds import FraudSettings
from gateway.contracts import PartnerContract, load_contracts
from gateway.delivery.breaker import BreakerState
from gateway.delivery.transport import HttpResponse, TransportError
from gateway.ledger.service import Ledger
from gateway.ledger.store import LeafRecord
from gateway.models import SubjectState
from gateway.provisions.fraud import FraudChecks
from gateway.storage import Store

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PARTNER = "sample-fraud-provider"
VERDICT = b'{"reference": "fp_0a1b", "score": 250, "decision": "approve", "reasons": []}'
ORDER = {"order_id": "o-1", "amount": 100, "currency": "JPY", "email": "a.b@example.com"}
Step = Callable[[float], HttpResponse]  # limit_s -> the answer (or raises)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class ScriptedTransport:
    """Plays `steps` in order; each may move the clock (time spent waiting) or raise."""

    def __init__(self, clock: Clock, steps: list[Step]) -> None:
        self.clock = clock
        self.steps = steps
        self.calls: list[tuple[str, bytes, dict[str, str], float]] = []

    async def post(
        self, url: str, body: bytes, *, headers: Mapping[str, str], limit_s: float
    ) -> HttpResponse:
        self.calls.append((url, body, dict(headers), limit_s))
        return self.steps.pop(0)(limit_s)


def answer(status: int = 200, body: bytes = VERDICT) -> Step:
    def step(limit_s: float) -> HttpResponse:
        return HttpResponse(status, {}, body)

    return step


def hang(clock: Clock) -> Step:
    def step(limit_s: float) -> HttpResponse:
        clock.now += limit_s  # waited the whole limit
        raise TransportError("no answer")

    return step


def refused(limit_s: float) -> HttpResponse:
    raise TransportError("refused")


class FakeStore:
    async def subject_states(self, subject_ids: Sequence[str]) -> dict[str, SubjectState]:
        return {}


class FakeLedger:
    def __init__(self) -> None:
        self.appends: list[list[dict[str, Any]]] = []

    async def append(self, records: Sequence[LeafRecord], outbox: Sequence[Any] = ()) -> int:
        self.appends.append([json.loads(r.leaf) for r in records])
        return 0


@pytest.fixture
def contracts() -> dict[str, PartnerContract]:
    return load_contracts(REPO / "partners", NOW.date())


def make(
    contracts: dict[str, PartnerContract], steps: list[Step], clock: Clock | None = None
) -> tuple[FraudChecks, ScriptedTransport, FakeLedger, Clock]:
    clock = clock or Clock()
    transport = ScriptedTransport(clock, steps)
    ledger = FakeLedger()
    checks = FraudChecks(
        contracts=contracts,
        store=cast(Store, FakeStore()),
        transport=transport,
        ledger=cast(Ledger, ledger),
        subject_key=lambda s: "k1:" + "0" * 64,
        hmac=lambda v: "k1:" + "1" * 64,
        credential=lambda ref: "s3cret" if ref == PARTNER else None,
        clock=lambda: NOW,
        monotonic=clock,
        new_id=iter(f"id-{n}" for n in range(1000)).__next__,
        default_region="JP",
    )
    return checks, transport, ledger, clock


async def run(checks: FraudChecks, clock: Clock) -> dict[str, Any]:
    return await checks.check(PARTNER, "cust-1", ORDER, started=clock.now)


async def test_one_call_with_the_whole_budget_key_and_credential(contracts: Any) -> None:
    checks, transport, ledger, clock = make(contracts, [answer()])
    result = await run(checks, clock)
    assert result["decision"] == "accept"
    assert result["score"] == 0.25
    [(url, body, headers, limit_s)] = transport.calls
    assert url.endswith("/sandbox/fraud/v1/scores")
    assert headers["Idempotency-Key"] == result["check_id"] == json.loads(body)["check_id"]
    assert headers["Authorization"] == "Bearer s3cret"
    assert limit_s == pytest.approx(0.8)  # the default timeout_ms
    [[provision, receipt]] = ledger.appends
    assert (provision["outcome"], receipt["outcome"]) == ("delivered", "received")


async def test_the_retry_gets_only_what_is_left_of_the_budget(contracts: Any) -> None:
    clock = Clock()

    def slow_503(limit_s: float) -> HttpResponse:
        clock.now += 0.3
        return HttpResponse(503, {}, b"")

    checks, transport, _, _ = make(contracts, [slow_503, answer()], clock)
    result = await run(checks, clock)
    assert result["fallback"] is False
    assert [c[3] for c in transport.calls] == [pytest.approx(0.8), pytest.approx(0.5)]
    assert transport.calls[0][1] == transport.calls[1][1]  # the same bytes, the same key


async def test_never_more_than_one_retry(contracts: Any) -> None:
    checks, transport, ledger, clock = make(contracts, [refused, refused, answer()])
    result = await run(checks, clock)
    assert (result["fallback"], result["reasons"]) == (True, ["provider_unreachable"])
    assert len(transport.calls) == 2
    [[failed]] = ledger.appends
    assert failed["outcome"] == "failed"
    assert failed["payload_sha256"] is not None


async def test_a_timeout_spends_the_budget_and_is_not_retried(contracts: Any) -> None:
    clock = Clock()
    checks, transport, _, _ = make(contracts, [], clock)
    transport.steps = [hang(clock), answer()]
    result = await run(checks, clock)
    assert result["reasons"] == ["provider_timeout"]
    assert len(transport.calls) == 1


async def test_a_client_error_is_not_retried(contracts: Any) -> None:
    checks, transport, _, clock = make(contracts, [answer(400, b'{"error": "x"}'), answer()])
    result = await run(checks, clock)
    assert result["reasons"] == ["provider_error"]
    assert len(transport.calls) == 1


async def test_a_budget_spent_before_the_call_sends_nothing_and_spares_the_breaker(
    contracts: Any,
) -> None:
    checks, transport, ledger, clock = make(contracts, [answer()])
    result = await checks.check(PARTNER, "cust-1", ORDER, started=clock.now - 1.0)
    assert result["reasons"] == ["provider_timeout"]
    assert transport.calls == []
    assert ledger.appends[0][0]["payload_sha256"] is None
    assert checks.route(PARTNER).breaker.state is BreakerState.CLOSED


async def test_the_breaker_counts_checks_not_attempts(contracts: Any) -> None:
    settings = FraudSettings(breaker_failures=2, breaker_reset_s=5.0)
    contracts[PARTNER] = contracts[PARTNER].model_copy(update={"fraud": settings})
    checks, transport, _, clock = make(contracts, [refused] * 4 + [answer()])
    await run(checks, clock)  # two attempts, one failure
    assert checks.route(PARTNER).breaker.state is BreakerState.CLOSED
    await run(checks, clock)
    assert checks.route(PARTNER).breaker.state is BreakerState.OPEN
    result = await run(checks, clock)
    assert result["reasons"] == ["circuit_open"]
    assert len(transport.calls) == 4
    clock.now += 5.0
    assert (await run(checks, clock))["fallback"] is False  # the half-open trial
    assert checks.route(PARTNER).breaker.state is BreakerState.CLOSED


async def test_a_cancelled_trial_does_not_leave_the_circuit_stuck(contracts: Any) -> None:
    settings = FraudSettings(breaker_failures=1, breaker_reset_s=5.0)
    contracts[PARTNER] = contracts[PARTNER].model_copy(update={"fraud": settings})
    checks, transport, _, clock = make(contracts, [refused, refused])
    await run(checks, clock)
    clock.now += 5.0
    gate = asyncio.Event()

    async def stuck(url: str, body: bytes, **_: Any) -> HttpResponse:
        await gate.wait()
        raise AssertionError("never answers")

    transport.post = stuck  # type: ignore[method-assign]
    task = asyncio.create_task(run(checks, clock))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    breaker = checks.route(PARTNER).breaker
    assert breaker.state is BreakerState.OPEN  # the trial failed: open again, not stuck
    clock.now += 5.0
    assert breaker.allow() is True  # and a new trial is possible after the reset


async def test_a_changed_contract_is_derived_again(contracts: Any) -> None:
    checks, transport, _, clock = make(contracts, [answer(), answer()])
    first = checks.route(PARTNER)
    assert checks.route(PARTNER) is first
    settings = FraudSettings(timeout_ms=100)
    contracts[PARTNER] = contracts[PARTNER].model_copy(update={"fraud": settings})
    await run(checks, clock)
    assert transport.calls[0][3] == pytest.approx(0.1)
