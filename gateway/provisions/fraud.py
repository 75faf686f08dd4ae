"""Fraud checks: one order, decided, minimised, scored by the provider inside a time budget,
and recorded with the provider's verdict.

    accept -> decide (policy) -> transform (contract fields only)
           -> the provision (Art. 29) in the log -> provider call (time budget, one retry,
              idempotency key, circuit breaker) -> verdict or fallback
           -> its outcome and, when the provider answered, the verdict as a receipt
              (Art. 30) in the log (gateway.provisions.fraud_records)

A checkout must never hang on us: every way the check cannot get the provider's verdict
(policy denial, gateway busy, circuit open, timeout, unreachable, error status, redirect,
malformed answer) answers the contract's declared fallback marked `"fallback": true`, with
reason codes saying why.

Only a malformed request (422) or an unknown or wrong partner (404 / 422) is an error.

The breaker hears only of the provider's failures, never of the gateway's own (docs: "The
provider call"): at most `max_in_flight` checks per partner are out at once, one beyond that
is answered `gateway_busy` at once, unsent (queued, it would reach the provider with part of
its budget gone); and a timeout is the provider's only if its request left with FAIR_SHARE of
the budget, else (the gateway itself was slow) it is `gateway_busy` too.

The per-partner parts (purpose, basis, URL, headers, breaker) are derived once per contract
(`_Route`); the hot path is one store read (`subject_states`), the policy decision (the rules
run once per kind of person and request: `DecisionCache`, proven equal to `policy.decide`), the
provider call and two `Ledger.append`s (group-committed), one before the call and one after.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import structlog

from gateway.adapters import InvalidOrderField
from gateway.adapters.fraud_check import (
    OrderValue,
    encode_request,
    order_fields,
    score_path,
)
from gateway.contract_kinds import FRAUD_PURPOSE, FraudDecision
from gateway.contracts import PartnerContract, Purpose
from gateway.delivery.breaker import BreakerState, CircuitBreaker
from gateway.delivery.transport import (
    Transport,
    TransportError,
    is_retryable_status,
)
from gateway.errors import FieldError, NotFound, ValidationFailed
from gateway.ledger.receipts import ReceiptEntries
from gateway.ledger.service import Ledger
from gateway.models import LegalBasis, PartnerKind, SubjectState
from gateway.policy_cache import DecisionCache
from gateway.provisions.fraud_answers import (
    FALLBACK_REASONS,
    ProviderCall,
    fallback_answer,
    judged,
    verdict_answer,
)
from gateway.provisions.fraud_records import CheckRecords
from gateway.storage import Store

__all__ = ["FALLBACK_REASONS", "FraudChecks"]

log = structlog.get_logger("gateway.fraud")

ATTEMPTS: Final = 2  # the first call and at most one retry, both inside the time budget
MIN_ATTEMPT_S: Final = 0.01  # a retry with less time left than this cannot get an answer
FAIR_SHARE: Final = 0.75  # of the budget: a timeout is the provider's if it had at least this
RECEIPT_ITEMS: Final = ("decision", "score", "reasons", "provider_ref")
OBTAINED_BY: Final = "fraud_check"


@dataclass(frozen=True, slots=True)
class _Route:
    """What a check needs from one fraud_check contract, derived once per contract."""

    contract: PartnerContract
    purpose: Purpose
    # The contract's basis for this purpose: typically Art. 27(1)(ii), which stands on the
    # purpose's written rationale and named approver (never automatic, rule 3).
    legal_basis: LegalBasis
    url: str
    headers: Mapping[str, str]  # besides the Idempotency-Key
    budget_s: float
    fallback: FraudDecision
    breaker: CircuitBreaker
    slots: _Slots
    receipts: ReceiptEntries  # the verdicts' log entries, from one template


class _Slots:
    """At most `size` of one partner's checks out at once; never waited for (module doc)."""

    def __init__(self, size: int) -> None:
        self._free = size

    def take(self) -> bool:
        if self._free <= 0:
            return False
        self._free -= 1
        return True

    def give_back(self) -> None:
        self._free += 1


class FraudChecks:
    """Synchronous fraud checks for the contracts of kind fraud_check. One per app: it holds
    each partner's circuit breaker."""

    def __init__(
        self,
        *,
        contracts: Mapping[str, PartnerContract],
        store: Store,
        transport: Transport,
        ledger: Ledger,
        subject_key: Callable[[str], str],
        hmac: Callable[[str], str],
        credential: Callable[[str], str | None],
        clock: Callable[[], datetime],
        monotonic: Callable[[], float],
        new_id: Callable[[], str],
        default_region: str,
        max_in_flight: int,
    ) -> None:
        """`max_in_flight`: checks out at once per partner (>= 1); one beyond it is answered
        gateway_busy. Raises ValueError when it is less than 1."""
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be >= 1")
        self._contracts = contracts
        self._store = store
        self._transport = transport
        self._ledger = ledger
        self._subject_key = subject_key
        self._hmac = hmac
        self._credential = credential
        self._clock = clock
        self._monotonic = monotonic
        self._new_id = new_id
        self._default_region = default_region
        self._max_in_flight = max_in_flight
        self._routes: dict[str, _Route] = {}
        self._decisions = DecisionCache()

    def route(self, partner: str) -> _Route:
        """The partner's route, derived on first use and again whenever its contract object
        changes. Raises NotFound (no such partner), ValidationFailed (not kind fraud_check)."""
        contract = self._contracts.get(partner)
        cached = self._routes.get(partner)
        if cached is not None and cached.contract is contract:
            return cached
        if contract is None:
            raise NotFound(
                "unknown partner", errors=[FieldError("/partner", "no contract has this id")]
            )
        if contract.kind is not PartnerKind.FRAUD_CHECK:
            detail = f"partner is a {contract.kind.value} partner, not fraud_check"
            raise ValidationFailed("wrong kind of partner", errors=[FieldError("/partner", detail)])
        self._routes[partner] = route = self._derive(contract)
        return route

    def _derive(self, contract: PartnerContract) -> _Route:
        purpose = contract.purposes[FRAUD_PURPOSE]  # the contract loader requires it
        settings = contract.fraud_settings()
        headers = {"Content-Type": "application/json"}
        secret = self._credential(contract.endpoint.credential_ref)
        if secret is not None:
            headers["Authorization"] = f"Bearer {secret}"
        return _Route(
            contract=contract,
            purpose=purpose,
            legal_basis=purpose.legal_bases[0],
            url=contract.endpoint.url.rstrip("/") + score_path,
            headers=headers,
            budget_s=settings.timeout_ms / 1000,
            fallback=settings.fallback,
            breaker=CircuitBreaker(
                failures=settings.breaker_failures,
                reset_s=settings.breaker_reset_s,
                clock=self._monotonic,
            ),
            slots=_Slots(self._max_in_flight),
            receipts=ReceiptEntries(
                contract=contract,
                purpose=FRAUD_PURPOSE,
                items=RECEIPT_ITEMS,
                obtained_by=OBTAINED_BY,
            ),
        )

    async def check(
        self, partner: str, subject_id: str, order: Mapping[str, object], *, started: float
    ) -> dict[str, Any]:
        """Check one order (its non-empty fields); the answer as sent to the caller.
        `started` is the monotonic time the request arrived: the budget counts from it.

        Raises NotFound / ValidationFailed (partner, or an order field that cannot be sent as
        the contract says), StorageError (the store or the log failed: nothing is answered
        that the log does not hold).
        """
        route = self.route(partner)
        sent = self._transform(route, order)
        states = await self._store.subject_states([subject_id])
        state = states.get(subject_id) or SubjectState(subject_id=subject_id)
        now = self._clock()
        decision = self._decisions.decide_request(  # policy.decide, once per kind of person
            subject_id=subject_id,
            purpose=FRAUD_PURPOSE,
            legal_basis=route.legal_basis,
            fields=tuple(order),
            contract=route.contract,
            state=state,
            now=now,
            rationale=route.purpose.exception_rationale,
            approver=route.purpose.exception_approver,
        )
        check_id = self._new_id()
        records = CheckRecords(
            contract=route.contract,
            receipts=route.receipts,
            ledger=self._ledger,
            decision=decision,
            check_id=check_id,
            now=now,
            subject_key=self._subject_key(subject_id),
            new_id=self._new_id,
            clock=self._clock,
        )
        if not decision.allowed:  # nothing leaves; the denial is recorded (Art. 29, rule 7)
            reasons = [r.code for r in decision.reasons if r.code != "fields_dropped"]
            await records.denied()
            return fallback_answer(route.fallback, check_id, decision, reasons)
        request = encode_request(check_id, sent)
        call = await self._call(
            route, check_id, request, deadline=started + route.budget_s, records=records
        )
        await records.settle(call)
        if call.verdict is None:
            assert call.reason is not None
            log.warning(
                "fraud_fallback", partner=route.contract.id, check_id=check_id, reason=call.reason
            )
            return fallback_answer(route.fallback, check_id, decision, [call.reason])
        return verdict_answer(check_id, decision, call.verdict)

    def _transform(self, route: _Route, order: Mapping[str, object]) -> dict[str, OrderValue]:
        """The order as sent: contract fields only, hashed or keyed as the contract says.
        Raises ValidationFailed naming the field (never its value)."""
        try:
            sent, _ = order_fields(
                order, route.purpose.fields, self._hmac, default_region=self._default_region
            )
        except InvalidOrderField as exc:
            raise ValidationFailed(
                f"order.{exc.field} cannot be sent: {exc.code}",
                errors=[FieldError(f"/order/{exc.field}", exc.detail)],
            ) from None
        return sent

    async def _call(
        self, route: _Route, check_id: str, body: bytes, *, deadline: float, records: CheckRecords
    ) -> ProviderCall:
        """Ask the provider, unless the gateway cannot (budget already spent, every slot of the
        partner taken: gateway_busy) or its circuit is open; the provision is in the log
        before the request leaves (`records.announce`). The check's result goes to the
        partner's breaker, once per check (not per attempt); a check that never reached the
        provider says nothing about it, except that a half-open trial it held is given back
        (as a failure, so the circuit stays open)."""
        if deadline - self._monotonic() < MIN_ATTEMPT_S or not route.slots.take():
            return ProviderCall(None, "gateway_busy", sent=False)
        try:
            return await self._guarded(route, check_id, body, deadline, records)
        finally:
            route.slots.give_back()

    async def _guarded(
        self, route: _Route, check_id: str, body: bytes, deadline: float, records: CheckRecords
    ) -> ProviderCall:
        """_call once it holds a slot: the breaker around the provision and the attempts."""
        if not route.breaker.allow():
            return ProviderCall(None, "circuit_open", sent=False)
        headers = {**route.headers, "Idempotency-Key": check_id}
        try:
            await records.announce(body)
        except BaseException:  # not sent: the provider is not to blame, a trial is given back
            if route.breaker.state is not BreakerState.CLOSED:
                route.breaker.failure()
            raise
        try:
            call = await self._attempts(route, body, headers, deadline)
        except BaseException:  # cancelled: no success, and never a trial left hanging
            route.breaker.failure()
            raise
        if call.verdict is not None:
            route.breaker.success()
        elif call.provider_failed or route.breaker.state is not BreakerState.CLOSED:
            route.breaker.failure()
        return call

    async def _attempts(
        self, route: _Route, body: bytes, headers: Mapping[str, str], deadline: float
    ) -> ProviderCall:
        """At most ATTEMPTS calls, each given the time left until `deadline`; a retry only
        after no answer or a retryable status (the Idempotency-Key makes it safe). A first
        call that went out with less than FAIR_SHARE of the budget left and timed out is
        gateway_busy: the provider did not have its fair chance."""
        reason, sent = "gateway_busy", False  # until a request leaves: the budget was ours
        for attempt in range(ATTEMPTS):
            left = deadline - self._monotonic()
            if left < MIN_ATTEMPT_S:
                break
            sent = True
            try:
                response = await self._transport.post(
                    route.url, body, headers=headers, limit_s=left
                )
            except TransportError:
                if deadline - self._monotonic() >= MIN_ATTEMPT_S:
                    reason = "provider_unreachable"
                elif attempt == 0 and left < FAIR_SHARE * route.budget_s:
                    reason = "gateway_busy"
                else:
                    reason = "provider_timeout"
                continue
            if is_retryable_status(response.status):
                reason = "provider_error"
                continue
            return judged(response)
        return ProviderCall(None, reason, sent=sent)
