"""DecisionCache gives exactly decide()'s answers, cached or not."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.contracts import PartnerContract, load_contracts
from gateway.models import ConsentAction, ConsentEvent, Discontinuance, LegalBasis, SubjectState
from gateway.policy import ProvisionItem, decide
from gateway.policy_cache import DecisionCache, RequestDecisions

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
CONTRACTS = load_contracts(REPO / "partners", NOW.date())
PURPOSES = sorted({p for c in CONTRACTS.values() for p in c.purposes} | {"nope"})
FIELDS = sorted({f for c in CONTRACTS.values() for p in c.purposes.values() for f in p.fields})
SUBJECTS = ("s-1", "s-2", "s-3")

instants = st.sampled_from([NOW - timedelta(days=400), NOW - timedelta(seconds=1), NOW,
                            NOW + timedelta(hours=1)])  # fmt: skip
maybe_text = st.sampled_from([None, "", " ", "pn-1", "web"])


@st.composite
def events(draw: st.DrawFn, subject: str) -> ConsentEvent:
    return ConsentEvent(
        subject_id=draw(st.sampled_from([subject, subject, "other"])),
        purpose=draw(st.sampled_from(PURPOSES)),
        action=draw(st.sampled_from(ConsentAction)),
        effective_at=draw(instants),
        notice_version=draw(maybe_text),
        channel=draw(maybe_text),
        foreign_disclosure_version=draw(st.sampled_from([None, "us-google-2025-04", "old"])),
        recorded_at=NOW,
        recorded_by="t",
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[ProvisionItem, PartnerContract, SubjectState]:
    subject = draw(st.sampled_from(SUBJECTS))
    contract = CONTRACTS[draw(st.sampled_from(sorted(CONTRACTS)))]
    purpose = draw(st.sampled_from(PURPOSES))
    consents = {}
    if draw(st.booleans()):
        event = draw(events(subject))
        consents[draw(st.sampled_from([purpose, event.purpose]))] = event
    stops = draw(
        st.lists(
            st.builds(
                Discontinuance,
                subject_id=st.just(subject),
                partners=st.sampled_from([None, (contract.id,), ("someone-else",)]),
                reason=st.just("r"),
                requested_at=instants,
                recorded_by=st.just("t"),
            ),
            max_size=2,
        )
    )
    item = ProvisionItem(
        subject_id=draw(st.sampled_from([subject, subject, " "])),
        purpose=purpose,
        legal_basis=draw(st.sampled_from(LegalBasis)),
        fields=tuple(draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True))),
        rationale=draw(st.sampled_from([None, "because"])),
        approver=draw(st.sampled_from([None, "cpo"])),
    )
    state = SubjectState(
        subject_id=draw(st.sampled_from([subject, subject, "other"])),
        consents=consents,
        discontinuances=tuple(stops),
    )
    return item, contract, state


@settings(max_examples=200, deadline=None)
@given(st.lists(cases(), min_size=1, max_size=40), instants)
def test_cache_answers_exactly_as_decide(
    batch: list[tuple[ProvisionItem, PartnerContract, SubjectState]], now: datetime
) -> None:
    cache = DecisionCache()
    for item, contract, state in batch * 2:  # the second pass is all hits
        assert cache.decide(item, contract, state, now) == decide(item, contract, state, now)
    assert cache.hits >= len(batch)


@settings(max_examples=200, deadline=None)
@given(st.lists(cases(), min_size=1, max_size=40), instants)
def test_a_request_bound_once_answers_as_decide_for_everyone(
    batch: list[tuple[ProvisionItem, PartnerContract, SubjectState]], now: datetime
) -> None:
    cache = DecisionCache()
    bound: dict[tuple[object, ...], RequestDecisions] = {}
    for item, contract, state in batch * 2:
        request = (item.purpose, item.legal_basis, item.fields, item.rationale, item.approver)
        decisions = bound.get((*request, contract.id))
        if decisions is None:
            decisions = bound[(*request, contract.id)] = cache.for_request(
                purpose=item.purpose,
                legal_basis=item.legal_basis,
                fields=item.fields,
                contract=contract,
                now=now,
                rationale=item.rationale,
                approver=item.approver,
            )
        answer, expected = (
            decisions.decide(item.subject_id, state),
            decide(item, contract, state, now),
        )
        assert answer == expected
        assert answer.model_fields_set == expected.model_fields_set
        assert pickle.loads(pickle.dumps(answer)) == expected
        shared, evidence = decisions.decide_shared(item.subject_id, state)
        update = {"subject_id": item.subject_id, "evidence": evidence}
        assert shared.model_copy(update=update) == expected
        assert list(evidence.items()) == list(expected.evidence.items())  # the order too


def test_copies_for_other_people_share_nothing_mutable() -> None:
    contract = CONTRACTS["google-customer-match"]
    decisions = DecisionCache().for_request(
        purpose="ad_customer_match",
        legal_basis=LegalBasis.CONSENT,
        fields=("email",),
        contract=contract,
        now=NOW,
    )
    answers = []
    for subject in ("s-1", "s-2", "s-3"):
        grant = ConsentEvent(
            subject_id=subject,
            purpose="ad_customer_match",
            action=ConsentAction.GRANT,
            effective_at=NOW - timedelta(hours=1),
            notice_version="pn-1",
            channel="web",
            foreign_disclosure_version="us-google-2025-04",
            recorded_at=NOW,
            recorded_by="t",
        )
        state = SubjectState(subject_id=subject, consents={"ad_customer_match": grant})
        answers.append(decisions.decide(subject, state))
    _, second, third = answers
    assert second.evidence is not third.evidence
    assert second.model_fields_set is not third.model_fields_set
    assert second.model_copy(update={"subject_id": "s-3"}) == third
    assert [a.subject_id for a in answers] == ["s-1", "s-2", "s-3"]


def test_a_naive_now_is_refused_before_anything_is_decided() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        DecisionCache().for_request(
            purpose="ad_customer_match",
            legal_basis=LegalBasis.CONSENT,
            fields=("email",),
            contract=CONTRACTS["google-customer-match"],
            now=NOW.replace(tzinfo=None),
        )


def test_same_kind_of_person_is_decided_once_with_their_own_evidence() -> None:
    contract = CONTRACTS["google-customer-match"]
    cache = DecisionCache()
    answers = []
    for n, hour in enumerate((1, 2, 3)):
        subject = f"s-{n}"
        grant = ConsentEvent(
            subject_id=subject,
            purpose="ad_customer_match",
            action=ConsentAction.GRANT,
            effective_at=NOW - timedelta(hours=hour),
            notice_version="pn-1",
            channel="web",
            foreign_disclosure_version="us-google-2025-04",
            recorded_at=NOW,
            recorded_by="t",
        )
        item = ProvisionItem(
            subject_id=subject,
            purpose="ad_customer_match",
            legal_basis=LegalBasis.CONSENT,
            fields=("email",),
        )
        state = SubjectState(subject_id=subject, consents={"ad_customer_match": grant})
        answers.append(cache.decide(item, contract, state, NOW))
    assert cache.hits == 2
    assert all(a.allowed for a in answers)
    assert len({a.evidence["obtained_at"] for a in answers}) == 3
    assert [a.subject_id for a in answers] == ["s-0", "s-1", "s-2"]


def test_a_consent_not_yet_in_effect_is_not_taken_from_the_cache() -> None:
    contract = CONTRACTS["google-customer-match"]
    cache = DecisionCache()
    answers = []
    for subject, effective in (
        ("s-1", NOW - timedelta(hours=1)),
        ("s-2", NOW + timedelta(hours=1)),
    ):
        grant = ConsentEvent(
            subject_id=subject,
            purpose="ad_customer_match",
            action=ConsentAction.GRANT,
            effective_at=effective,
            notice_version="pn-1",
            channel="web",
            foreign_disclosure_version="us-google-2025-04",
            recorded_at=NOW,
            recorded_by="t",
        )
        item = ProvisionItem(
            subject_id=subject,
            purpose="ad_customer_match",
            legal_basis=LegalBasis.CONSENT,
            fields=("email",),
        )
        state = SubjectState(subject_id=subject, consents={"ad_customer_match": grant})
        answers.append(cache.decide(item, contract, state, NOW))
        assert answers[-1] == decide(item, contract, state, NOW)
    assert [a.allowed for a in answers] == [True, False]


def test_a_full_cache_starts_afresh_and_answers_as_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long-lived cache (the fraud checks') forgets everything at MAX_ENTRIES, then keeps
    caching: it neither grows without bound nor stops caching once full."""
    monkeypatch.setattr("gateway.policy_cache.MAX_ENTRIES", 2)
    contract = CONTRACTS["google-customer-match"]
    cache = DecisionCache()
    kinds = [("email",), ("phone",), ("email", "phone")]  # three kinds of request
    for fields in [*kinds, kinds[2]]:
        item = ProvisionItem(
            subject_id="s-1", purpose="ad_customer_match", legal_basis=LegalBasis.CONSENT,
            fields=fields,
        )  # fmt: skip
        state = SubjectState(subject_id="s-1")
        assert cache.decide(item, contract, state, NOW) == decide(item, contract, state, NOW)
    assert cache.hits == 1  # the third kind, kept after the cache started afresh


def test_a_reloaded_contract_never_gets_the_answers_of_one_gone_before() -> None:
    """Answers are kept by id(contract); a contract replaced and dropped (a reload) must not
    pass its id, and its answers, to the next one made in its place."""
    base = CONTRACTS["google-customer-match"]
    purpose = base.purposes["ad_customer_match"]
    narrower = {"ad_customer_match": purpose.model_copy(update={"fields": {}})}
    cache = DecisionCache()
    state = SubjectState(subject_id="s-1")
    item = ProvisionItem(
        subject_id="s-1", purpose="ad_customer_match", legal_basis=LegalBasis.CONSENT,
        fields=("email",),
    )  # fmt: skip
    for n in range(50):
        reloaded = base.model_copy(update={"purposes": narrower} if n % 2 else {})
        assert cache.decide(item, reloaded, state, NOW) == decide(item, reloaded, state, NOW)
        del reloaded  # gone: the next copy may be made where it was
