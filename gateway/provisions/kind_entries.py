"""The transfer-log entries of a bulk transfer, kind of person by kind of person.

`DecisionCache.decide_shared` gives a person's decision as the decision their kind of person
shares and the person's own evidence. Every entry of a kind has the same shape
(`TransferEntries.shape`), so it is built once per kind and filled with each person's subject
id, key and evidence (`TransferEntries.record_shaped`): the very bytes `TransferEntries.record`
writes for the person's own decision, without a Decision per person. What a planner derives
from a kind's decision (its denial message, the decision with fewer fields sent, or none) is
made once per kind too.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from gateway.contracts import PartnerContract
from gateway.ledger.entries import Outcome
from gateway.ledger.store import LeafRecord
from gateway.ledger.templates import EntryShape, TransferEntries
from gateway.policy import Decision
from gateway.policy_cache import Evidence

__all__ = ["KindEntries"]

_T = TypeVar("_T")


class KindEntries:
    """The `allowed` and `denied` entries of one transfer at one time, per shared decision."""

    def __init__(self, *, contract: PartnerContract, transfer_id: str, time: datetime) -> None:
        self._allowed = TransferEntries(
            contract=contract, outcome=Outcome.ALLOWED, transfer_id=transfer_id, time=time
        )
        self._denied = TransferEntries(
            contract=contract, outcome=Outcome.DENIED, transfer_id=transfer_id, time=time
        )
        # (id of a decision, what) -> (the decision, kept so that its id stays its own; what)
        self._memo: dict[tuple[int, Hashable], tuple[Decision, Any]] = {}
        self._last: tuple[Decision, EntryShape] | None = None  # the last allowed kind

    def allowed(
        self, decision: Decision, evidence: Evidence, subject_id: str, subject_key: str, sha: str
    ) -> LeafRecord:
        """The `allowed` entry of one person of `decision`'s kind, for the payload whose
        SHA-256 is `sha`. Raises CanonicalizationError for a lone surrogate."""
        last = self._last
        if last is None or last[0] is not decision:  # people of a kind mostly come in runs
            shape = self._once(decision, "allowed", lambda: self._allowed.shape(decision))
            last = self._last = (decision, shape)
        return self._allowed.record_shaped(
            last[1],
            subject_id=subject_id,
            subject_key=subject_key,
            evidence=evidence,
            payload_sha256=sha,
        )

    def denied(
        self,
        decision: Decision,
        evidence: Evidence,
        subject_id: str,
        subject_key: str,
        reasons: Sequence[Mapping[str, str]] | None = None,
    ) -> LeafRecord:
        """The `denied` entry of one person of `decision`'s kind (with `reasons` in place of
        the decision's own, when given). Raises CanonicalizationError for a lone surrogate."""
        frozen = None if reasons is None else tuple(tuple(r.items()) for r in reasons)
        shape = self._once(
            decision, ("denied", frozen), lambda: self._denied.shape(decision, reasons=reasons)
        )
        return self._denied.record_shaped(
            shape, subject_id=subject_id, subject_key=subject_key, evidence=evidence
        )

    def denial(self, decision: Decision) -> tuple[str, str]:
        """A denied kind's rejection: its first reason's code, and every reason's message."""

        def denial() -> tuple[str, str]:
            code = decision.reasons[0].code if decision.reasons else "denied"
            message = " ".join(r.message for r in decision.reasons if r.code)  # sentences
            return code, message or "denied by policy"

        return self._once(decision, "denial", denial)

    def with_fields_sent(self, decision: Decision, sent: tuple[str, ...]) -> Decision:
        """The kind's decision listing only `sent` as sent (the log lists what was sent)."""
        return self._once(
            decision, ("sent", sent), lambda: decision.model_copy(update={"fields_sent": sent})
        )

    def not_sent(self, decision: Decision) -> Decision:
        """An allowed kind's decision for a record that turned out unusable: not sent."""
        return self._once(
            decision,
            "not sent",
            lambda: decision.model_copy(update={"allowed": False, "fields_sent": ()}),
        )

    def _once(self, decision: Decision, what: Hashable, build: Callable[[], _T]) -> _T:
        found = self._memo.get((id(decision), what))
        if found is None:
            found = self._memo[id(decision), what] = (decision, build())
        value: _T = found[1]
        return value
