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

The projection comes in two parts, cached at two levels: the request's (request, contract,
day), and the person's. `for_request` binds the first once for a bulk caller, which then pays
only the person's part per record; and a cached answer is copied for the next person from
its pickled state, without model_copy's generic bookkeeping.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import date, datetime
from typing import Any, Final

from gateway.contracts import PartnerContract
from gateway.models import ConsentAction, ConsentEvent, LegalBasis, SubjectState
from gateway.policy import (
    JST,
    Decision,
    ProvisionItem,
    _consent_evidence,  # the very evidence decide records: one definition
    _in_effect,
    decide,
)

__all__ = ["DecisionCache", "Evidence", "RequestDecisions"]

MAX_ENTRIES: Final = 4096  # kinds of people in one upload are few; bound it anyway
_CONSENT_KEY: Final = "obtained_at"  # only consent evidence has it
# policy._consent_evidence's keys, in its order (foreign_disclosure_version when the grant has one)
_CONSENT_KEYS: Final = ("notice_version", "obtained_at", "channel", "foreign_disclosure_version")
_GRANT: Final = ConsentAction.GRANT
_Request = tuple[str, LegalBasis, tuple[str, ...], str | None, str | None, str | None]


class DecisionCache:
    """`decide` with memory: one per upload chunk, or one for the fraud checks of a process.
    At MAX_ENTRIES answers it forgets them all and starts afresh (contracts and days move on,
    and the answers of a day past are never asked for again)."""

    def __init__(self) -> None:
        # (request, contract, day) -> the person's projection -> (decision, its pickled state)
        self._cache: dict[Hashable, dict[Hashable, _Entry]] = {}
        self._contracts: dict[int, PartnerContract] = {}  # by id: see _entries
        self._size = 0
        self._day: tuple[datetime | None, date | None] = (None, None)
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
        request = (purpose, legal_basis, fields, rationale, approver, pri_confirmation)
        return RequestDecisions(self, request, contract, now).decide(subject_id, state, item)

    def for_request(
        self,
        *,
        purpose: str,
        legal_basis: LegalBasis,
        fields: tuple[str, ...],
        contract: PartnerContract,
        now: datetime,
        rationale: str | None = None,
        approver: str | None = None,
        pri_confirmation: str | None = None,
    ) -> RequestDecisions:
        """`decide_request` with everything but the person bound, for deciding one kind of
        request for many people. Raises ValueError for a naive `now`."""
        request = (purpose, legal_basis, fields, rationale, approver, pri_confirmation)
        return RequestDecisions(self, request, contract, now)

    def _today(self, now: datetime) -> date:
        """now's date in Japan (what `decide` dates contracts by), worked out once per `now`."""
        last, today = self._day
        if now is not last or today is None:
            today = now.astimezone(JST).date()
            self._day = (now, today)
        return today

    def _entries(self, key: Hashable, contract: PartnerContract) -> dict[Hashable, _Entry]:
        """The answers for `key`, which holds id(contract): the contract is kept alive as
        long as they are, so its id cannot pass to another contract (a reloaded one) and
        bring it this one's answers."""
        entries = self._cache.get(key)
        if entries is None:
            entries = self._cache[key] = {}
            self._contracts[id(contract)] = contract
        return entries

    def _keep(self, owner: RequestDecisions, key: Hashable, decision: Decision) -> None:
        """Keep `decision` among `owner`'s answers under the person's projection `key`. A full
        cache (a long-lived one: the fraud checks', over new days and reloaded contracts)
        forgets every answer and contract but the owner's: RequestDecisions made before
        then still hold their own dicts, which are then no longer shared (wasted, not
        wrong)."""
        entries = owner._entries
        if self._size >= MAX_ENTRIES:
            entries.clear()
            self._cache = {owner._key: entries}
            self._contracts = {id(owner._contract): owner._contract}
            self._size = 0
        entries[key] = (decision, decision.__getstate__(), _evidence_mode(decision))
        self._size += 1


Evidence = dict[str, str]
# How a cached decision's evidence becomes the next person's: the same (no consent evidence in
# it), the person's consent evidence alone (nothing else in it), or the two merged.
_OWN, _CONSENT, _MERGED = "own", "consent", "merged"
_Entry = tuple[Decision, dict[str, Any], str]  # (decision, its pickled state, evidence mode)


def _merged(evidence: Evidence, mode: str, grant: ConsentEvent) -> Evidence:
    """`evidence` with `grant`'s consent evidence written over it."""
    consent = _consent_evidence(grant)
    # Only consent evidence (the common case): the merge would give just this, in order.
    return consent if mode is _CONSENT else {**evidence, **consent}


def _evidence_mode(decision: Decision) -> str:
    evidence = decision.evidence
    if _CONSENT_KEY not in evidence:
        return _OWN
    return _CONSENT if tuple(evidence) in (_CONSENT_KEYS, _CONSENT_KEYS[:3]) else _MERGED


class RequestDecisions:
    """`DecisionCache.decide_request` for one request, contract and time: `decide` per person."""

    def __init__(
        self, cache: DecisionCache, request: _Request, contract: PartnerContract, now: datetime
    ) -> None:
        if now.utcoffset() is None:
            raise ValueError("now must be a timezone-aware datetime")
        self._cache = cache
        self._request = request
        self._purpose = request[0]
        self._contract = contract
        self._partner_id = contract.id
        self._now = now
        today = cache._today(now)
        self._key = (id(contract), contract.id, today, request)
        self._entries = cache._entries(self._key, contract)

    def decide(
        self, subject_id: str, state: SubjectState, item: ProvisionItem | None = None
    ) -> Decision:
        """`decide` for this request of `subject_id` (`item`, when the caller has it built)
        in `state`. Raises pydantic.ValidationError for values a ProvisionItem refuses."""
        key = _projection(subject_id, self._purpose, self._partner_id, state, self._now)
        cached = self._entries.get(key)
        if cached is None:
            return self._decided(subject_id, state, item, key)
        self._cache.hits += 1
        return _for_subject(cached[1], subject_id, self._evidence(cached, state))

    def decide_shared(self, subject_id: str, state: SubjectState) -> tuple[Decision, Evidence]:
        """`decide`'s answer in two parts: the decision this person's kind of person shares,
        and the person's own evidence; `decide` gives the first with `subject_id` and the
        evidence written in. For bulk callers that need no Decision per person (a transfer
        log entry takes the subject id and evidence apart: TransferEntries.record_shaped).
        The shared decision's own subject id and evidence may be another person's.

        Raises pydantic.ValidationError for values a ProvisionItem refuses.
        """
        key = _projection(subject_id, self._purpose, self._partner_id, state, self._now)
        cached = self._entries.get(key)
        if cached is None:
            decision = self._decided(subject_id, state, None, key)
            return decision, decision.evidence
        self._cache.hits += 1
        return cached[0], self._evidence(cached, state)

    def _evidence(self, cached: _Entry, state: SubjectState) -> Evidence:
        """The cached decision's evidence with this person's own consent evidence in it."""
        decision, _, mode = cached
        if mode is _OWN:
            return decision.evidence
        return _merged(decision.evidence, mode, state.consents[self._purpose])

    def _decided(
        self, subject_id: str, state: SubjectState, item: ProvisionItem | None, key: Hashable
    ) -> Decision:
        if item is None:
            purpose, legal_basis, fields, rationale, approver, pri_confirmation = self._request
            item = ProvisionItem(
                subject_id=subject_id,
                purpose=purpose,
                legal_basis=legal_basis,
                fields=fields,
                rationale=rationale,
                approver=approver,
                pri_confirmation=pri_confirmation,
            )
        decision = decide(item, self._contract, state, self._now)
        self._cache._keep(self, key, decision)
        return decision


def _for_subject(pickled: dict[str, Any], subject_id: str, evidence: Evidence) -> Decision:
    """`decision.model_copy(update={"subject_id": ..., "evidence": ...})` from the decision's
    pickled state (pydantic's __getstate__): the same model, with its own dict and field set,
    without model_copy's generic steps (it cost as much as the rest of a cache hit)."""
    values = {**pickled["__dict__"], "subject_id": subject_id, "evidence": evidence}
    copy = Decision.__new__(Decision)
    fields_set = set(pickled["__pydantic_fields_set__"])
    copy.__setstate__({**pickled, "__dict__": values, "__pydantic_fields_set__": fields_set})
    return copy


def _projection(
    subject_id: str, purpose: str, partner_id: str, state: SubjectState, now: datetime
) -> Hashable:
    """The person's part: whether the state is theirs, what the rules test of their consent
    for `purpose`, whether a discontinuance covering `partner_id` is in effect."""
    event = state.consents.get(purpose)
    consent: Hashable = None
    if event is not None:
        at, notice, channel = event.effective_at, event.notice_version, event.channel
        placeable = at.utcoffset() is not None
        consent = (
            event.subject_id == subject_id,
            event.purpose == purpose,
            event.action is _GRANT,  # decide: anything but a grant is a withdrawal
            placeable,
            placeable and at > now,
            # policy._present(...) is None: no evidence (None, or blank), inlined
            notice is None or not notice.strip(),
            channel is None or not channel.strip(),
            event.foreign_disclosure_version,
        )
    stops = state.discontinuances
    stopped = bool(stops) and any(
        d.covers(partner_id) and _in_effect(d.requested_at, now) for d in stops
    )
    return (bool(subject_id.strip()), state.subject_id == subject_id, consent, stopped)
