"""FraudChecks with a scripted transport and a hand-driven clock: the time budget each attempt
gets, one retry at most, the breaker counted once per check, and what is recorded. No sockets:
the integration tests (tests/integration/test_fraud_checks.py) do the same over real ones."""

from __future__ import annotations

import asyncio
import hashlib
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
from gateway.errors import StorageError
from gateway.ledger.service import Ledger
from gateway.ledger.store import LeafRecord
from gateway.models import SubjectState
from gateway.provisions.fraud import FALLBACK_REASONS, FraudChecks
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
        first = sum(map(len, self.appends))  # the log index of the append's first record
        self.appends.append([json.loads(r.leaf) for r in records])
        return first

    def settled(self) -> list[dict[str, Any]]:
        """The one entry of a check's second append (its outcome), after its provision."""
        [[provision], [outcome]] = self.appends
        assert provision["outcome"] == "allowed"
        assert outcome["refers_to"] == 0
        assert outcome["payload_sha256"] == provision["payload_sha256"] is not None
        return [outcome]


@pytest.fixture
def contracts() -> dict[str, PartnerContract]:
    return load_contracts(REPO / "partners", NOW.date())


def make(
    contracts: dict[str, PartnerContract],
    steps: list[Step],
    clock: Clock | None = None,
    *,
    max_in_flight: int = 100,
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
        max_in_flight=max_in_flight,
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
    # The provision is in the log before the request leaves; its outcome and the receipt after.
    [[provision], [outcome, receipt]] = ledger.appends
    assert provision["outcome"] == "allowed"
    assert provision["payload_sha256"] == hashlib.sha256(body).hexdigest()
    assert (outcome["outcome"], outcome["operation"]) == ("delivered", "score")
    assert outcome["refers_to"] == 0  # the provision's log index
    assert outcome["transfer_id"] == receipt["transfer_id"] == provision["transfer_id"]
    assert outcome["delivery_id"] == result["check_id"]
    assert receipt["outcome"] == "received"


async def test_nothing_leaves_while_the_provision_is_not_in_the_log(contracts: Any) -> None:
    settings = FraudSettings(breaker_failures=1, breaker_reset_s=5.0)
    contracts[PARTNER] = contracts[PARTNER].model_copy(update={"fraud": settings})
    checks, transport, ledger, clock = make(contracts, [answer()])

    async def failing(records: Sequence[LeafRecord], outbox: Sequence[Any] = ()) -> int:
        raise StorageError("the disk is full")

    ledger.append = failing  # type: ignore[method-assign]
    with pytest.raises(StorageError):
        await run(checks, clock)
    assert transport.calls == []  # the request never left
    # Not the provider's failure: with one failure to open it, the circuit is still closed.
    assert checks.route(PARTNER).breaker.state is BreakerState.CLOSED


async def test_a_budget_spent_on_the_provision_sends_nothing_and_says_so(
    contracts: Any,
) -> None:
    clock = Clock()
    checks, transport, ledger, _ = make(contracts, [answer()], clock)
    append = ledger.append

    async def slow(records: Sequence[LeafRecord], outbox: Sequence[Any] = ()) -> int:
        clock.now += 0.795  # the log took all but 5 ms of the 800 ms budget
        return await append(records, outbox)

    ledger.append = slow  # type: ignore[method-assign]
    result = await run(checks, clock)
    assert (result["fallback"], result["reasons"]) == (True, ["gateway_busy"])
    assert transport.calls == []
    [outcome] = ledger.settled()
    assert outcome["reasons"][0]["code"] == "gateway_busy"  # ours, not the provider's
    assert checks.route(PARTNER).breaker.state is BreakerState.CLOSED


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
    [failed] = ledger.settled()
    assert failed["outcome"] == "failed"
    assert failed["reasons"] == [
        {"code": "provider_unreachable", "message": FALLBACK_REASONS["provider_unreachable"]}
    ]


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
    assert result["reasons"] == ["gateway_busy"]  # our delay, not the provider's
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


async def cancel_mid_call(checks: FraudChecks, transport: Any, clock: Any) -> None:
    """A check whose provider never answers, cancelled while it waits (its caller left)."""

    async def stuck(url: str, body: bytes, **_: Any) -> HttpResponse:
        await asyncio.Event().wait()
        raise AssertionError("never answers")

    transport.post = stuck
    task = asyncio.create_task(run(checks, clock))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_cancelled_trial_does_not_leave_the_circuit_stuck(contracts: Any) -> None:
    settings = FraudSettings(breaker_failures=1, breaker_reset_s=5.0)
    contracts[PARTNER] = contracts[PARTNER].model_copy(update={"fraud": settings})
    checks, transport, _, clock = make(contracts, [refused, refused])
    await run(checks, clock)
    clock.now += 5.0
    await cancel_mid_call(checks, transport, clock)
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


# --- redirects, answers too large, the gateway's own limit


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_a_failure_not_retried(contracts: Any, status: int) -> None:
    checks, transport, ledger, clock = make(contracts, [answer(status, b""), answer()])
    result = await run(checks, clock)
    assert (result["fallback"], result["reasons"]) == (True, ["provider_redirect"])
    assert len(transport.calls) == 1
    [failed] = ledger.settled()
    assert failed["outcome"] == "failed"
    assert failed["reasons"][-1]["code"] == "provider_redirect"


async def test_an_answer_too_large_to_read_is_no_verdict(contracts: Any) -> None:
    huge = HttpResponse(200, {}, b"", body_too_large=True)
    checks, transport, _, clock = make(contracts, [lambda _: huge, answer()])
    result = await run(checks, clock)
    assert result["reasons"] == ["provider_answer_invalid"]
    assert len(transport.calls) == 1


async def test_a_check_beyond_the_partners_limit_is_answered_at_once_and_spares_the_breaker(
    contracts: Any,
) -> None:
    settings = FraudSettings(breaker_failures=1, breaker_reset_s=5.0)
    contracts[PARTNER] = contracts[PARTNER].model_copy(update={"fraud": settings})
    checks, transport, ledger, clock = make(contracts, [], max_in_flight=2)
    gate = asyncio.Event()

    async def held(url: str, body: bytes, **_: Any) -> HttpResponse:
        transport.calls.append((url, body, {}, 0.0))
        await gate.wait()
        return HttpResponse(200, {}, VERDICT)

    transport.post = held  # type: ignore[method-assign]
    out = [asyncio.create_task(run(checks, clock)) for _ in range(2)]
    await asyncio.sleep(0)
    assert len(transport.calls) == 2  # both slots taken, both checks at the provider
    async with asyncio.timeout(1):  # answered at once: it does not wait for a slot
        busy = await run(checks, clock)
    assert (busy["fallback"], busy["reasons"]) == (True, ["gateway_busy"])
    assert len(transport.calls) == 2
    # The two at the provider each logged their provision first; the busy one, only its failure.
    assert [a[0]["outcome"] for a in ledger.appends] == ["allowed", "allowed", "failed"]
    assert ledger.appends[2][0]["payload_sha256"] is None  # nothing was sent
    assert checks.route(PARTNER).breaker.state is BreakerState.CLOSED
    gate.set()
    assert [(await t)["fallback"] for t in out] == [False, False]
    assert (await run(checks, clock))["fallback"] is False  # the slots were given back


async def test_slots_are_given_back_whatever_the_call_came_to(contracts: Any) -> None:
    steps: list[Step] = [refused, refused, answer(400), answer(307)]
    checks, transport, _, clock = make(contracts, [*steps, answer()], max_in_flight=1)
    for _ in range(3):  # unreachable (two attempts), an error status, a redirect
        assert (await run(checks, clock))["fallback"] is True
    assert (await run(checks, clock))["fallback"] is False
    assert len(transport.calls) == 5


def test_the_limit_must_let_a_check_out(contracts: Any) -> None:
    with pytest.raises(ValueError, match="max_in_flight"):
        make(contracts, [], max_in_flight=0)


async def test_a_cancelled_check_gives_its_slot_back(contracts: Any) -> None:
    checks, transport, _, clock = make(contracts, [answer()], max_in_flight=1)
    scripted = transport.post
    await cancel_mid_call(checks, transport, clock)
    transport.post = scripted  # type: ignore[method-assign]
    assert (await run(checks, clock))["fallback"] is False


@pytest.mark.parametrize(
    ("spent_s", "reason", "breaker"),
    [
        (0.1, "provider_timeout", BreakerState.OPEN),  # it had 0.7 s of 0.8: its own failure
        (0.3, "gateway_busy", BreakerState.CLOSED),  # it had 0.5 s: our delay, not its
    ],
)
async def test_a_timeout_counts_against_the_provider_only_if_it_had_its_share(
    contracts: Any, spent_s: float, reason: str, breaker: BreakerState
) -> None:
    settings = FraudSettings(breaker_failures=1, breaker_reset_s=5.0)
    contracts[PARTNER] = contracts[PARTNER].model_copy(update={"fraud": settings})
    clock = Clock()
    checks, transport, ledger, _ = make(contracts, [], clock)
    transport.steps = [hang(clock)]
    result = await checks.check(PARTNER, "cust-1", ORDER, started=clock.now - spent_s)
    assert result["reasons"] == [reason]
    assert transport.calls[0][3] == pytest.approx(0.8 - spent_s)
    assert ledger.appends[0][0]["outcome"] == "allowed"  # sent, in both cases
    assert ledger.appends[0][0]["payload_sha256"] is not None
    assert checks.route(PARTNER).breaker.state is breaker


async def test_a_late_check_that_the_provider_also_refused_counts(contracts: Any) -> None:
    settings = FraudSettings(breaker_failures=1, breaker_reset_s=5.0)
    contracts[PARTNER] = contracts[PARTNER].model_copy(update={"fraud": settings})
    clock = Clock()
    checks, transport, _, _ = make(contracts, [], clock)
    transport.steps = [refused, hang(clock)]
    result = await checks.check(PARTNER, "cust-1", ORDER, started=clock.now - 0.3)
    assert result["reasons"] == ["provider_timeout"]  # the retry timed out, after a refusal
    assert checks.route(PARTNER).breaker.state is BreakerState.OPEN
