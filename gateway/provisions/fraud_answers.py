"""What a fraud check answers: the provider's verdict, or the contract's fallback with why
(gateway.provisions.fraud), and what the provider call came to."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from gateway.adapters import ProviderResponseError
from gateway.adapters.fraud_check import Verdict, decode_response
from gateway.contract_kinds import FraudDecision
from gateway.delivery.transport import HttpResponse, is_redirect_status
from gateway.policy import Decision

__all__ = [
    "FALLBACK_REASONS",
    "ProviderCall",
    "fallback_answer",
    "judged",
    "policy_reasons",
    "reason",
    "sha256_hex",
    "verdict_answer",
]

# Why a check answered the fallback instead of the provider's verdict. Fixed sentences: a
# message never carries a value from the request or the provider's answer.
FALLBACK_REASONS: Final = {
    "gateway_busy": "The gateway was too busy to give the provider its share of the time "
    "budget; the provider was not called, or called too late.",
    "circuit_open": "The provider failed repeatedly; its circuit is open, it was not called.",
    "provider_timeout": "The provider did not answer within the time budget.",
    "provider_unreachable": "The provider could not be reached.",
    "provider_error": "The provider answered with an error status.",
    "provider_redirect": "The provider answered with a redirect; redirects are not followed.",
    "provider_answer_invalid": "The provider's answer was not a usable verdict.",
}


@dataclass(frozen=True, slots=True)
class ProviderCall:
    """What the provider call came to: a verdict, or the fallback reason."""

    verdict: Verdict | None
    reason: str | None  # a FALLBACK_REASONS code when there is no verdict
    sent: bool  # whether a request went out (so its payload hash is recorded)
    response_sha256: str | None = None

    @property
    def provider_failed(self) -> bool:
        """Whether the check counts against the provider: it went out and got no verdict,
        for a reason of the provider's (gateway_busy is ours)."""
        return self.verdict is None and self.sent and self.reason != "gateway_busy"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def judged(response: HttpResponse) -> ProviderCall:
    """A final (not retryable) answer: the verdict, or why it is none. A redirect is never
    followed (the contract names the one endpoint data may go to); an answer too large to
    read is no verdict."""
    if is_redirect_status(response.status):
        return ProviderCall(None, "provider_redirect", sent=True)
    try:
        if response.body_too_large:
            raise ProviderResponseError("the answer is too large", status=response.status)
        verdict = decode_response(response.status, response.body)
    except ProviderResponseError as exc:
        code = "provider_answer_invalid" if exc.status == 200 else "provider_error"
        return ProviderCall(None, code, sent=True)
    return ProviderCall(verdict, None, sent=True, response_sha256=sha256_hex(response.body))


def policy_reasons(decision: Decision) -> list[dict[str, str]]:
    return [{"code": r.code, "message": r.message, "rule": r.rule} for r in decision.reasons]


def reason(code: str) -> dict[str, str]:
    return {"code": code, "message": FALLBACK_REASONS[code]}


def verdict_answer(check_id: str, decision: Decision, verdict: Verdict) -> dict[str, Any]:
    return {
        "check_id": check_id,
        "transfer_id": check_id,
        "decision": verdict.decision.value,
        "score": verdict.score,
        "reasons": list(verdict.reasons),
        "provider_ref": verdict.provider_ref,
        "fallback": False,
        "fields_dropped": list(decision.fields_dropped),
    }


def fallback_answer(
    fallback: FraudDecision, check_id: str, decision: Decision, reasons: list[str]
) -> dict[str, Any]:
    """The contract's declared fallback: not the provider's determination, and marked so."""
    return {
        "check_id": check_id,
        "transfer_id": check_id,
        "decision": fallback.value,
        "score": None,
        "reasons": reasons,
        "provider_ref": None,
        "fallback": True,
        "fields_dropped": list(decision.fields_dropped),
    }
