"""`DecisionCache`: `policy.decide` for bulk uploads, one rule evaluation per kind of person.

In an upload of a million records to one partner, nearly every decision is the same decision
for another person: same request shape, same kind of consent, same answer; only the subject
id and the consent evidence (when and how that person consented) differ. `decide` costs tens
of microseconds; this cache runs it once per *projection* of its inputs and copies the result
for everyone who projects the same, with their own subject id and evidence.

The projection is everything `decide` reads, reduced to what can change its outcome:
the request (purpose, basis, fields, rationale, approver, confirmation), the contract, the
day in Japan (contracts, reviews and joint-use publication are dated), and for the person:
whether the state is theirs, and of their consent for the purpose every property the rules
test (present, theirs, its purpose, grant or withdrawal, placeable in time, not in the
future, notice version and channel present, foreign disclosure version) and whether a
discontinuance covering this partner is in effect. The evidence a decision records about the
consent (`obtained_at`, `notice_version`, `channel`, `foreign_disclosure_version`) is then
written from the person's own grant. tests/unit/test_policy_cache.py holds `decide` and the
cache to the same answers on generated people, requests and contracts.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import datetime
from typing import Any, Final

from gateway.contracts import PartnerContract
from gateway.models import LegalBasis, SubjectState
from gateway.policy import (
    JST,
    Decision,
    ProvisionItem,
    _consent_evidence,  # the very evidence decide records: one definition
    _in_effect,
    _present,
    decide,
)

__all__ = ["DecisionCache"]

MAX_ENTRIES: Final = 4096  # kinds of people in one upload are few; bound it anyway
_CONSENT_KEY: Final = "obtained_at"  # only consent evidence has it


class DecisionCache:
    """`decide` with memory. One per upload (or chunk): contracts and time move on."""

    def __init__(self) -> None:
        self._cache: dict[Hashable, Decision] = {}
        self.hits = 0

    def decide(
        self, item: ProvisionItem, contract: PartnerContract, state: SubjectState, now: datetime
    ) -> Decision:
        """Exactly `policy.decide(item, contract, state, now)`. Raises ValueError for a
        naive `now`."""
        return self.decide_request(
            subject_id=item.subject_id,
            purpose=item.purpose,
            legal_basis=item.legal_basis,
            fields=item.fields,
            contract=contract,
            state=state,
            now=now,
            rationale=item.rationale,
            approver=item.approver,
            pri_confirmation=item.pri_confirmation,
            item=item,
        )

    def decide_request(
        self,
        *,
        subject_id: str,
        purpose: str,
        legal_basis: LegalBasis,
        fields: tuple[str, ...],
        contract: PartnerContract,
        state: SubjectState,
        now: datetime,
        rationale: str | None = None,
        approver: str | None = None,
        pri_confirmation: str | None = None,
        item: ProvisionItem | None = None,
    ) -> Decision:
        """`decide` for the ProvisionItem these values make, which is only built (and
        validated) when the cache has no answer yet: the bulk path's common case costs a
        tuple and a dict lookup. Raises pydantic.ValidationError for values a ProvisionItem
        refuses; ValueError for a naive `now`."""
        if now.utcoffset() is None:
            raise ValueError("now must be a timezone-aware datetime")
        request = (purpose, legal_basis, fields, rationale, approver, pri_confirmation)
        key = _projection(subject_id, request, contract, state, now)
        cached = self._cache.get(key)
        if cached is None:
            if item is None:
                item = ProvisionItem(
                    subject_id=subject_id,
                    purpose=purpose,
                    legal_basis=legal_basis,
                    fields=fields,
                    rationale=rationale,
                    approver=approver,
                    pri_confirmation=pri_confirmation,
                )
            decision = decide(item, contract, state, now)
            if len(self._cache) < MAX_ENTRIES:
                self._cache[key] = decision
            return decision
        self.hits += 1
        evidence = cached.evidence
        if _CONSENT_KEY in evidence:  # this person's own consent evidence
            evidence = {**evidence, **_consent_evidence(state.consents[purpose])}
        return cached.model_copy(update={"subject_id": subject_id, "evidence": evidence})


def _projection(
    subject_id: str,
    request: tuple[Any, ...],
    contract: PartnerContract,
    state: SubjectState,
    now: datetime,
) -> Hashable:
    """`request`: (purpose, legal basis, fields, rationale, approver, confirmation)."""
    event = state.consents.get(request[0])
    consent: Hashable = None
    if event is not None:
        placeable = event.effective_at.utcoffset() is not None
        consent = (
            event.subject_id == subject_id,
            event.purpose,
            event.action,
            placeable,
            placeable and event.effective_at > now,
            _present(event.notice_version) is None,
            _present(event.channel) is None,
            event.foreign_disclosure_version,
        )
    stopped = any(
        d.covers(contract.id) and _in_effect(d.requested_at, now) for d in state.discontinuances
    )
    return (
        id(contract),
        contract.id,
        now.astimezone(JST).date(),
        request,
        bool(subject_id.strip()),
        state.subject_id == subject_id,
        consent,
        stopped,
    )
