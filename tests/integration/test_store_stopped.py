"""`Store.stopped_among`: who in a delivered request may no longer be provided (the delivery
worker's check after each delivery, APPI Art. 35), on SQLite and PostgreSQL alike. Its
answer must agree with the current state `subject_states` gives the policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.models import Discontinuance
from gateway.storage import Store
from tests.integration.test_store import grant, withdraw

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
PURPOSE = "ad_customer_match"
PARTNER = "google-customer-match"
EARLY, LATE = NOW - timedelta(days=2), NOW - timedelta(days=1)


def stop(subject: str, partners: tuple[str, ...] | None) -> Discontinuance:
    return Discontinuance(
        subject_id=subject, partners=partners, reason="asked", requested_at=NOW, recorded_by="a"
    )


async def people(store: Store) -> dict[str, str]:
    """Each kind of history, and what the answer must say about it."""
    await store.append_consent_events(
        [
            grant("granted", PURPOSE, EARLY),
            grant("withdrawn", PURPOSE, EARLY),
            withdraw("withdrawn", PURPOSE, LATE),
            withdraw("granted-again", PURPOSE, EARLY),
            grant("granted-again", PURPOSE, LATE),
            # recorded last, effective first: the later grant is the current state
            grant("withdrawn-before", PURPOSE, LATE),
            withdraw("withdrawn-before", PURPOSE, EARLY),
            grant("other-purpose", PURPOSE, EARLY),
            withdraw("other-purpose", "ad_personalization", LATE),
            grant("stopped-and-withdrawn", PURPOSE, EARLY),
            withdraw("stopped-and-withdrawn", PURPOSE, LATE),
        ]
    )
    for item in (
        stop("stopped-all", None),
        stop("stopped-here", ("sample-point-program", PARTNER)),
        stop("stopped-elsewhere", ("sample-point-program",)),
        stop("stopped-and-withdrawn", (PARTNER,)),
    ):
        await store.append_discontinuance(item)
    return {
        "withdrawn": "consent_withdrawn",
        "stopped-all": "discontinuance",
        "stopped-here": "discontinuance",
        "stopped-and-withdrawn": "discontinuance",
    }


async def test_only_the_withdrawn_and_the_discontinued_are_answered(store: Store) -> None:
    expected = await people(store)
    everyone = [
        "granted", "withdrawn", "granted-again", "withdrawn-before", "other-purpose",
        "stopped-all", "stopped-here", "stopped-elsewhere", "stopped-and-withdrawn",
        "never-heard-of", "withdrawn",
    ]  # fmt: skip
    assert await store.stopped_among(everyone, purpose=PURPOSE, partner_id=PARTNER) == expected
    for subject in everyone:  # one or two people: SQLite reads them on the loop's connection
        answer = await store.stopped_among(
            [subject, "granted"], purpose=PURPOSE, partner_id=PARTNER
        )
        assert answer == ({subject: expected[subject]} if subject in expected else {})
    assert await store.stopped_among([], purpose=PURPOSE, partner_id=PARTNER) == {}


async def test_the_answer_agrees_with_the_current_state(store: Store) -> None:
    await people(store)
    subjects = ["granted", "withdrawn", "granted-again", "withdrawn-before", "other-purpose"]
    subjects += ["stopped-all", "stopped-here", "stopped-elsewhere", "stopped-and-withdrawn"]
    for purpose, partner in [(PURPOSE, PARTNER), ("ad_personalization", "sample-point-program")]:
        states = await store.subject_states(subjects)
        expected: dict[str, str] = {}
        for subject, state in states.items():
            current = state.consents.get(purpose)
            if current is not None and current.action.value == "withdraw":
                expected[subject] = "consent_withdrawn"
            if any(d.covers(partner) for d in state.discontinuances):
                expected[subject] = "discontinuance"
        found = await store.stopped_among(subjects, purpose=purpose, partner_id=partner)
        assert found == expected
