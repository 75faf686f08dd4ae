"""The policy engine, rule by rule (requirements.md, "The law in rules"), plus its invariants.

Contracts are built in code from one base contract, so these tests do not depend on TOML files.
Each case states the whole outcome: allowed, reason codes in order, rule ids, fields sent and
dropped, the cross-border basis and the evidence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.contracts import (
    Agreement,
    CrossBorder,
    Endpoint,
    JointUse,
    LegalEntity,
    PartnerContract,
    Purpose,
)
from gateway.models import (
    APPROVAL_REQUIRED,
    ART27_1_EXCEPTIONS,
    ConsentAction,
    ConsentEvent,
    CrossBorderBasis,
    DataCategory,
    Discontinuance,
    LegalBasis,
    PartnerKind,
    SubjectState,
    Transform,
)
from gateway.policy import (
    DENIAL_CODES,
    INFORMATIONAL_CODES,
    JST,
    REASON_RULES,
    Decision,
    ProvisionItem,
    decide,
)

B = LegalBasis
X = CrossBorderBasis
NOW = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)  # 12:00 in Japan
TODAY = date(2026, 6, 1)
PURPOSE = "attribute_estimation"
PARTNER = "acme-points"
SUBJECT = "alice@example.com"  # email-shaped on purpose: no reason message may echo it
RULE_ORDER = ("R1", "R2", "R3", "R4", "R5", "R6", "R9", "R11", "R12", "R13")

BASE_PURPOSE = Purpose(
    legal_bases=(B.CONSENT,),
    data_category=DataCategory.PERSONAL_DATA,
    fields={
        "email": Transform.SHA256,
        "postal_code": Transform.CLEAR,
        "birth_year": Transform.CLEAR,
    },
)
CONTRACT_FIELDS = tuple(BASE_PURPOSE.fields)
BASE = PartnerContract(
    id=PARTNER,
    kind=PartnerKind.ATTRIBUTE_EXPORT,
    country="JP",
    legal_entity=LegalEntity(name="Acme Points K.K.", address="Tokyo", representative="A. Rep"),
    agreement=Agreement(
        reference="AGR-2026-01", valid_from=date(2026, 1, 1), valid_until=date(2026, 12, 31)
    ),
    endpoint=Endpoint(url="https://acme.example/upload", credential_ref="acme-points"),
    cross_border=CrossBorder(basis=X.DOMESTIC),
    purposes={PURPOSE: BASE_PURPOSE},
)


def contract(*, purpose: dict[str, Any] | None = None, **update: Any) -> PartnerContract:
    """BASE with top-level fields replaced, and fields of its one purpose replaced."""
    purposes = {PURPOSE: BASE_PURPOSE.model_copy(update=purpose or {})}
    return BASE.model_copy(update={"purposes": purposes, **update})


def bases(*legal_bases: LegalBasis, **purpose: Any) -> dict[str, Any]:
    return {"legal_bases": legal_bases, **purpose}


def item(**update: Any) -> ProvisionItem:
    # Fields in the reverse of the contract's order: fields_sent must come back in contract order.
    base = ProvisionItem(
        subject_id=SUBJECT, purpose=PURPOSE, legal_basis=B.CONSENT, fields=("postal_code", "email")
    )
    return base.model_copy(update=update)


def grant(**update: Any) -> ConsentEvent:
    event = ConsentEvent(
        seq=1,
        subject_id=SUBJECT,
        purpose=PURPOSE,
        action=ConsentAction.GRANT,
        effective_at=NOW - timedelta(days=30),
        notice_version="pn-2026-01",
        channel="web",
        foreign_disclosure_version="fd-us-3",
        recorded_at=NOW - timedelta(days=30),
        recorded_by="client-crm",
    )
    return event.model_copy(update=update)


def state(*events: ConsentEvent, stops: tuple[Discontinuance, ...] = ()) -> SubjectState:
    return SubjectState(
        subject_id=SUBJECT, consents={e.purpose: e for e in events}, discontinuances=stops
    )


def stop(
    partners: tuple[str, ...] | None = None, at: datetime = NOW - timedelta(days=1)
) -> Discontinuance:
    return Discontinuance(
        subject_id=SUBJECT, partners=partners, reason="asked", requested_at=at, recorded_by="crm"
    )


GRANTED = state(grant())
NO_CONSENT = state()
CONSENT_EVIDENCE = {
    "notice_version": "pn-2026-01",
    "obtained_at": (NOW - timedelta(days=30)).isoformat(),
    "channel": "web",
    "foreign_disclosure_version": "fd-us-3",
}
SENT = ("email", "postal_code")
APPROVAL = {"rationale": "Card-testing attack in progress", "approver": "K. Sato, compliance"}
ON_CONTRACT = {"exception_rationale": "Fraud prevention, notice s.4", "exception_approver": "CPO"}
FRAUD: dict[str, Any] = {"kind": PartnerKind.FRAUD_CHECK, "recipient_matches_records": False}
US_FOREIGN_CONSENT: dict[str, Any] = {
    "country": "US",
    "kind": PartnerKind.CUSTOMER_MATCH,
    "cross_border": CrossBorder(basis=X.FOREIGN_CONSENT, foreign_disclosure_version="fd-us-3"),
}
PERSONAL = DataCategory.PERSONAL_DATA
PRI = DataCategory.PERSONALLY_REFERABLE
PSEUDO = DataCategory.PSEUDONYMIZED


@dataclass(frozen=True)
class Case:
    item: ProvisionItem = field(default_factory=item)
    contract: PartnerContract = BASE
    state: SubjectState = GRANTED
    now: datetime = NOW
    allowed: bool = True
    codes: tuple[str, ...] = ()  # exactly, in order
    rules: tuple[str, ...] = ("R1", "R2", "R6", "R13")
    cross_border: CrossBorderBasis | None = X.DOMESTIC
    evidence: dict[str, str] = field(default_factory=lambda: dict(CONSENT_EVIDENCE))
    sent: tuple[str, ...] | None = None  # None: SENT when allowed, () when denied
    dropped: tuple[str, ...] = ()


def deny(*codes: str, **kw: Any) -> Case:
    return Case(allowed=False, codes=codes, **kw)


R1 = [
    pytest.param(Case(), id="R1-allow-consent-domestic-fields-in-contract-order"),
    pytest.param(
        Case(now=datetime(2026, 12, 31, 14, 59, tzinfo=UTC)),
        id="R1-allow-last-agreement-day-in-japan",
    ),
    pytest.param(
        deny("contract_not_in_force", now=datetime(2026, 12, 31, 15, 0, tzinfo=UTC)),
        id="R1-deny-agreement-over-in-japan-though-still-dec-31-in-utc",
    ),
    pytest.param(
        deny(
            "contract_not_in_force",
            contract=contract(
                agreement=Agreement(
                    reference="A", valid_from=date(2025, 1, 1), valid_until=date(2026, 5, 31)
                )
            ),
        ),
        id="R1-deny-agreement-expired",
    ),
    pytest.param(
        deny(
            "contract_not_in_force",
            contract=contract(
                agreement=Agreement(
                    reference="A", valid_from=date(2026, 6, 2), valid_until=date(2027, 1, 1)
                )
            ),
        ),
        id="R1-deny-agreement-not-yet-valid",
    ),
    pytest.param(
        deny(
            "unknown_purpose",
            "consent_missing",
            item=item(purpose="lookalike_audience"),
            rules=("R1", "R2", "R6"),
            evidence={},
            dropped=("postal_code", "email"),
        ),
        id="R1-deny-unknown-purpose-drops-everything",
    ),
    pytest.param(
        deny(
            "basis_not_in_contract",
            item=item(legal_basis=B.LAWS_AND_REGULATIONS),
            rules=("R1", "R3", "R6", "R13"),
            evidence={},
        ),
        id="R1-deny-basis-not-in-contract",
    ),
    pytest.param(
        deny("no_fields", "fields_dropped", item=item(fields=("phone",)), dropped=("phone",)),
        id="R1-deny-no-field-left-after-minimisation",
    ),
    pytest.param(deny("no_fields", item=item(fields=())), id="R1-deny-no-fields-requested"),
    pytest.param(
        deny(
            "subject_mismatch",
            "consent_missing",
            state=SubjectState(subject_id="bob", consents={PURPOSE: grant(subject_id="bob")}),
            evidence={},
        ),
        id="R1-deny-state-of-another-subject",
    ),
    pytest.param(
        deny("subject_id_missing", "consent_missing", item=item(subject_id=" "), evidence={}),
        id="R1-deny-blank-subject-id",
    ),
    pytest.param(
        deny(
            "anonymized_basis_not_applicable",
            item=item(legal_basis=B.ANONYMIZED_PUBLISHED),
            contract=contract(purpose=bases(B.ANONYMIZED_PUBLISHED)),
            rules=("R1", "R6", "R13"),
            evidence={},
        ),
        id="R1-deny-anonymized-basis-on-personal-data",
    ),
    pytest.param(
        Case(
            item=item(legal_basis=B.ANONYMIZED_PUBLISHED),
            contract=contract(
                purpose=bases(B.ANONYMIZED_PUBLISHED, data_category=DataCategory.ANONYMIZED)
            ),
            state=NO_CONSENT,
            rules=("R1", "R6", "R13"),
            evidence={},
        ),
        id="R1-allow-anonymized-basis-on-anonymized-data",
    ),
]

R2 = [
    pytest.param(
        Case(
            state=state(grant(effective_at=NOW)),
            evidence={**CONSENT_EVIDENCE, "obtained_at": NOW.isoformat()},
        ),
        id="R2-allow-consent-effective-exactly-now",
    ),
    pytest.param(
        Case(
            state=state(grant(foreign_disclosure_version=None)),
            evidence={
                k: v for k, v in CONSENT_EVIDENCE.items() if k != "foreign_disclosure_version"
            },
        ),
        id="R2-allow-domestic-consent-without-foreign-disclosure",
    ),
    pytest.param(
        deny("consent_missing", state=NO_CONSENT, evidence={}), id="R2-deny-no-consent-on-file"
    ),
    pytest.param(
        deny("consent_missing", state=state(grant(purpose="newsletter")), evidence={}),
        id="R2-deny-consent-for-another-purpose-only",
    ),
    pytest.param(
        deny(
            "consent_missing",
            state=SubjectState(subject_id=SUBJECT, consents={PURPOSE: grant(purpose="newsletter")}),
            evidence={},
        ),
        id="R2-deny-consent-filed-under-the-wrong-purpose",
    ),
    pytest.param(
        deny("consent_withdrawn", state=state(grant(action=ConsentAction.WITHDRAW)), evidence={}),
        id="R2-deny-consent-withdrawn",
    ),
    pytest.param(
        deny(
            "consent_missing",
            state=state(grant(effective_at=NOW + timedelta(seconds=1))),
            evidence={},
        ),
        id="R2-deny-grant-dated-in-the-future-counts-as-missing",
    ),
    pytest.param(
        deny("consent_evidence_missing", state=state(grant(notice_version=None)), evidence={}),
        id="R2-deny-grant-without-notice-version",
    ),
    pytest.param(
        deny("consent_evidence_missing", state=state(grant(channel="  ")), evidence={}),
        id="R2-deny-grant-with-blank-channel",
    ),
    pytest.param(
        deny(
            "consent_evidence_missing",
            state=state(grant(effective_at=datetime(2026, 5, 1, 9, 0))),
            evidence={},
        ),
        id="R2-deny-grant-time-without-timezone",
    ),
]

R3_RULES = ("R1", "R3", "R6", "R13")
R3 = [
    pytest.param(
        Case(
            item=item(legal_basis=B.LAWS_AND_REGULATIONS),
            contract=contract(purpose=bases(B.LAWS_AND_REGULATIONS)),
            state=NO_CONSENT,
            rules=R3_RULES,
            evidence={},
        ),
        id="R3-allow-laws-and-regulations-needs-no-approval",
    ),
    *[
        pytest.param(
            Case(
                item=item(legal_basis=basis, **APPROVAL),
                contract=contract(purpose=bases(basis)),
                state=NO_CONSENT,
                rules=R3_RULES,
                evidence=APPROVAL,
            ),
            id=f"R3-allow-{basis.value}-with-rationale-and-approver-from-request",
        )
        for basis in sorted(APPROVAL_REQUIRED)
    ],
    *[
        pytest.param(
            deny(
                "exception_rationale_missing",
                "exception_approver_missing",
                item=item(legal_basis=basis),
                contract=contract(purpose=bases(basis)),
                state=NO_CONSENT,
                rules=R3_RULES,
                evidence={},
            ),
            id=f"R3-deny-{basis.value}-without-rationale-or-approver",
        )
        for basis in sorted(APPROVAL_REQUIRED)
    ],
    pytest.param(
        Case(
            item=item(legal_basis=B.PROTECT_LIFE_BODY_PROPERTY),
            contract=contract(purpose=bases(B.PROTECT_LIFE_BODY_PROPERTY, **ON_CONTRACT)),
            rules=R3_RULES,
            evidence={"rationale": "Fraud prevention, notice s.4", "approver": "CPO"},
        ),
        id="R3-allow-rationale-and-approver-standing-on-the-contract",
    ),
    pytest.param(
        Case(
            item=item(legal_basis=B.PROTECT_LIFE_BODY_PROPERTY, **APPROVAL),
            contract=contract(purpose=bases(B.PROTECT_LIFE_BODY_PROPERTY, **ON_CONTRACT)),
            rules=R3_RULES,
            evidence=APPROVAL,
        ),
        id="R3-allow-request-rationale-takes-precedence-over-contract",
    ),
    pytest.param(
        deny(
            "exception_approver_missing",
            item=item(legal_basis=B.PROTECT_LIFE_BODY_PROPERTY, rationale="Chargeback wave"),
            contract=contract(purpose=bases(B.PROTECT_LIFE_BODY_PROPERTY, **ON_CONTRACT)),
            rules=R3_RULES,
            evidence={"rationale": "Chargeback wave"},
        ),
        id="R3-deny-request-rationale-is-not-paired-with-the-contract-approver",
    ),
    pytest.param(
        deny(
            "exception_approver_missing",
            item=item(
                legal_basis=B.COOPERATE_PUBLIC_BODY, rationale="Police inquiry", approver=" "
            ),
            contract=contract(purpose=bases(B.COOPERATE_PUBLIC_BODY)),
            rules=R3_RULES,
            evidence={"rationale": "Police inquiry"},
        ),
        id="R3-deny-blank-approver",
    ),
]

R4_RULES = ("R1", "R4", "R6", "R13")
ENTRUST = bases(B.ENTRUSTMENT)
R4 = [
    pytest.param(
        Case(
            item=item(legal_basis=B.ENTRUSTMENT),
            contract=contract(purpose=ENTRUST, **FRAUD),
            rules=R4_RULES,
            evidence={},
        ),
        id="R4-allow-entrustment-to-a-non-matching-recipient",
    ),
    pytest.param(
        deny(
            "entrustment_invalid_matching",
            item=item(legal_basis=B.ENTRUSTMENT),
            contract=contract(
                purpose=ENTRUST, kind=PartnerKind.FRAUD_CHECK, recipient_matches_records=True
            ),
            rules=R4_RULES,
            evidence={},
        ),
        id="R4-deny-entrustment-to-pooled-fraud-scoring",
    ),
    *[
        pytest.param(
            deny(
                "entrustment_invalid_matching",
                item=item(legal_basis=B.ENTRUSTMENT),
                contract=contract(purpose=ENTRUST, kind=kind, recipient_matches_records=False),
                rules=R4_RULES,
                evidence={},
            ),
            id=f"R4-deny-entrustment-to-{kind.value}-whatever-the-flag-says",
        )
        for kind in (PartnerKind.CUSTOMER_MATCH, PartnerKind.ATTRIBUTE_EXPORT)
    ],
    pytest.param(
        Case(
            item=item(legal_basis=B.JOINT_USE),
            contract=contract(
                purpose=bases(B.JOINT_USE),
                joint_use=JointUse(
                    published_at=TODAY,
                    data_items=("email",),
                    joint_users="Acme group",
                    purpose="Member services",
                    responsible_party="Acme HD",
                ),
            ),
            rules=R4_RULES,
            evidence={"joint_use_published_at": "2026-06-01"},
        ),
        id="R4-allow-joint-use-published-today",
    ),
    pytest.param(
        deny(
            "joint_use_not_published",
            item=item(legal_basis=B.JOINT_USE),
            contract=contract(
                purpose=bases(B.JOINT_USE),
                joint_use=JointUse(
                    published_at=date(2026, 6, 2),
                    data_items=("email",),
                    joint_users="Acme group",
                    purpose="Member services",
                    responsible_party="Acme HD",
                ),
            ),
            rules=R4_RULES,
            evidence={"joint_use_published_at": "2026-06-02"},
        ),
        id="R4-deny-joint-use-published-after-today",
    ),
    pytest.param(
        deny(
            "joint_use_not_published",
            item=item(legal_basis=B.JOINT_USE),
            contract=contract(purpose=bases(B.JOINT_USE)),
            rules=R4_RULES,
            evidence={},
        ),
        id="R4-deny-joint-use-never-published",
    ),
    pytest.param(
        Case(
            item=item(legal_basis=B.BUSINESS_SUCCESSION),
            contract=contract(purpose=bases(B.BUSINESS_SUCCESSION)),
            rules=R4_RULES,
            evidence={},
        ),
        id="R4-allow-business-succession-in-contract",
    ),
]

R5 = [
    pytest.param(Case(rules=("R1", "R2", "R6", "R13")), id="R5-allow-consent-is-not-opt-out"),
    pytest.param(
        deny(
            "opt_out_not_offered",
            item=item(legal_basis=B.OPT_OUT),
            contract=contract(purpose=bases(B.OPT_OUT)),
            rules=("R1", "R5", "R6", "R13"),
            evidence={},
        ),
        id="R5-deny-opt-out-even-when-the-contract-lists-it",
    ),
    pytest.param(
        deny(
            "basis_not_in_contract",
            "opt_out_not_offered",
            item=item(legal_basis=B.OPT_OUT),
            rules=("R1", "R5", "R6", "R13"),
            evidence={},
        ),
        id="R5-deny-opt-out-not-in-contract-reports-both",
    ),
]


def review(due: date | None) -> CrossBorder:
    return CrossBorder(basis=X.EQUIVALENT_MEASURES, equivalent_measures_review_due=due)


R6 = [
    pytest.param(
        Case(contract=contract(**US_FOREIGN_CONSENT), cross_border=X.FOREIGN_CONSENT),
        id="R6-allow-foreign-consent-pointing-to-the-contract-disclosure",
    ),
    pytest.param(
        deny(
            "foreign_disclosure_version_mismatch",
            contract=contract(**US_FOREIGN_CONSENT),
            state=state(grant(foreign_disclosure_version="fd-us-2")),
            cross_border=X.FOREIGN_CONSENT,
            evidence={**CONSENT_EVIDENCE, "foreign_disclosure_version": "fd-us-2"},
        ),
        id="R6-deny-consent-saw-an-older-foreign-disclosure",
    ),
    pytest.param(
        deny(
            "foreign_disclosure_version_mismatch",
            contract=contract(**US_FOREIGN_CONSENT),
            state=state(grant(foreign_disclosure_version=None)),
            cross_border=X.FOREIGN_CONSENT,
            evidence={
                k: v for k, v in CONSENT_EVIDENCE.items() if k != "foreign_disclosure_version"
            },
        ),
        id="R6-deny-domestic-consent-for-a-foreign-recipient",
    ),
    pytest.param(
        deny(
            "foreign_disclosure_version_missing",
            contract=contract(
                **{**US_FOREIGN_CONSENT, "cross_border": CrossBorder(basis=X.FOREIGN_CONSENT)}
            ),
            state=state(grant(foreign_disclosure_version=None)),
            cross_border=X.FOREIGN_CONSENT,
            evidence={
                k: v for k, v in CONSENT_EVIDENCE.items() if k != "foreign_disclosure_version"
            },
        ),
        id="R6-deny-contract-names-no-disclosure-so-none-cannot-match-none",
    ),
    pytest.param(
        deny(
            "consent_missing",
            "foreign_consent_missing",
            contract=contract(**US_FOREIGN_CONSENT),
            state=NO_CONSENT,
            cross_border=X.FOREIGN_CONSENT,
            evidence={},
        ),
        id="R6-deny-no-consent-for-a-foreign-recipient",
    ),
    pytest.param(
        deny(
            "not_available_for_foreign_recipient",
            "foreign_consent_missing",
            item=item(legal_basis=B.BUSINESS_SUCCESSION),
            contract=contract(purpose=bases(B.BUSINESS_SUCCESSION), **US_FOREIGN_CONSENT),
            state=NO_CONSENT,
            rules=R4_RULES,
            cross_border=X.FOREIGN_CONSENT,
            evidence={},
        ),
        id="R6-deny-business-succession-abroad-without-foreign-consent",
    ),
    pytest.param(
        deny(
            "not_available_for_foreign_recipient",
            item=item(legal_basis=B.BUSINESS_SUCCESSION),
            contract=contract(purpose=bases(B.BUSINESS_SUCCESSION), **US_FOREIGN_CONSENT),
            rules=R4_RULES,
            cross_border=X.FOREIGN_CONSENT,
        ),
        id="R6-deny-business-succession-to-a-foreign-consent-recipient",
    ),
    pytest.param(
        deny(
            "not_available_for_foreign_recipient",
            item=item(legal_basis=B.ENTRUSTMENT),
            contract=contract(purpose=ENTRUST, **{**US_FOREIGN_CONSENT, **FRAUD}),
            rules=R4_RULES,
            cross_border=X.FOREIGN_CONSENT,
        ),
        id="R6-deny-entrustment-to-a-foreign-consent-recipient",
    ),
    pytest.param(
        deny(
            "not_available_for_foreign_recipient",
            item=item(legal_basis=B.JOINT_USE),
            contract=contract(
                purpose=bases(B.JOINT_USE),
                joint_use=JointUse(
                    published_at=date(2026, 1, 1),
                    data_items=("email",),
                    joint_users="Acme group",
                    purpose="Member services",
                    responsible_party="Acme HD",
                ),
                **US_FOREIGN_CONSENT,
            ),
            rules=R4_RULES,
            cross_border=X.FOREIGN_CONSENT,
            evidence={**CONSENT_EVIDENCE, "joint_use_published_at": "2026-01-01"},
        ),
        id="R6-deny-joint-use-with-a-foreign-consent-recipient",
    ),
    pytest.param(
        Case(
            item=item(legal_basis=B.LAWS_AND_REGULATIONS),
            contract=contract(purpose=bases(B.LAWS_AND_REGULATIONS), **US_FOREIGN_CONSENT),
            state=NO_CONSENT,
            rules=R3_RULES,
            cross_border=X.ART27_1_EXCEPTION,
            evidence={},
        ),
        id="R6-allow-art27-1-exception-abroad-needs-no-foreign-consent",
    ),
    pytest.param(
        Case(
            contract=contract(country="DE", cross_border=CrossBorder(basis=X.DESIGNATED_COUNTRY)),
            cross_border=X.DESIGNATED_COUNTRY,
        ),
        id="R6-allow-designated-country",
    ),
    pytest.param(
        Case(
            item=item(legal_basis=B.ENTRUSTMENT),
            contract=contract(
                purpose=ENTRUST,
                country="GB",
                cross_border=CrossBorder(basis=X.DESIGNATED_COUNTRY),
                **FRAUD,
            ),
            rules=R4_RULES,
            cross_border=X.DESIGNATED_COUNTRY,
            evidence={},
        ),
        id="R6-allow-entrustment-to-a-designated-country",
    ),
    pytest.param(
        deny(
            "country_not_designated",
            contract=contract(country="US", cross_border=CrossBorder(basis=X.DESIGNATED_COUNTRY)),
            cross_border=X.DESIGNATED_COUNTRY,
        ),
        id="R6-deny-designated-basis-for-a-country-that-is-not",
    ),
    pytest.param(
        Case(
            contract=contract(country="SG", cross_border=review(TODAY)),
            cross_border=X.EQUIVALENT_MEASURES,
            evidence={**CONSENT_EVIDENCE, "equivalent_measures_review_due": "2026-06-01"},
        ),
        id="R6-allow-equivalent-measures-review-due-today",
    ),
    pytest.param(
        deny(
            "equivalent_measures_review_overdue",
            contract=contract(country="SG", cross_border=review(date(2026, 5, 31))),
            cross_border=X.EQUIVALENT_MEASURES,
            evidence={**CONSENT_EVIDENCE, "equivalent_measures_review_due": "2026-05-31"},
        ),
        id="R6-deny-equivalent-measures-review-overdue",
    ),
    pytest.param(
        deny(
            "equivalent_measures_review_missing",
            contract=contract(country="SG", cross_border=review(None)),
            cross_border=X.EQUIVALENT_MEASURES,
        ),
        id="R6-deny-equivalent-measures-without-review-date",
    ),
    pytest.param(
        deny(
            "cross_border_basis_inconsistent",
            contract=contract(country="US"),
            cross_border=None,
        ),
        id="R6-deny-foreign-recipient-with-domestic-basis",
    ),
    pytest.param(
        deny(
            "cross_border_basis_inconsistent",
            contract=contract(cross_border=CrossBorder(basis=X.DESIGNATED_COUNTRY)),
            cross_border=None,
        ),
        id="R6-deny-japanese-recipient-with-foreign-basis",
    ),
    pytest.param(
        deny(
            "art27_1_exception_required",
            contract=contract(country="US", cross_border=CrossBorder(basis=X.ART27_1_EXCEPTION)),
            cross_border=X.ART27_1_EXCEPTION,
        ),
        id="R6-deny-consent-to-a-recipient-reachable-only-by-exception",
    ),
]

PRI_CONTRACT = contract(purpose=bases(B.PRI_CONSENT_CONFIRMED, data_category=PRI))
R9_RULES = ("R1", "R6", "R9", "R13")
R9 = [
    pytest.param(
        Case(
            item=item(legal_basis=B.PRI_CONSENT_CONFIRMED, pri_confirmation="CONF-2026-0042"),
            contract=PRI_CONTRACT,
            state=NO_CONSENT,
            rules=R9_RULES,
            evidence={"pri_confirmation": "CONF-2026-0042"},
        ),
        id="R9-allow-referable-data-with-recipient-confirmation",
    ),
    pytest.param(
        deny(
            "pri_confirmation_missing",
            item=item(legal_basis=B.PRI_CONSENT_CONFIRMED),
            contract=PRI_CONTRACT,
            rules=R9_RULES,
            evidence={},
        ),
        id="R9-deny-referable-data-without-confirmation",
    ),
    pytest.param(
        deny(
            "pri_confirmation_missing",
            item=item(legal_basis=B.PRI_CONSENT_CONFIRMED, pri_confirmation=""),
            contract=PRI_CONTRACT,
            rules=R9_RULES,
            evidence={},
        ),
        id="R9-deny-referable-data-with-blank-confirmation",
    ),
    pytest.param(
        deny(
            "pri_basis_required",
            contract=contract(purpose=bases(B.CONSENT, B.PRI_CONSENT_CONFIRMED, data_category=PRI)),
            rules=("R1", "R2", "R6", "R9", "R13"),
        ),
        id="R9-deny-referable-data-on-our-own-consent",
    ),
    pytest.param(
        Case(
            item=item(legal_basis=B.LAWS_AND_REGULATIONS),
            contract=contract(purpose=bases(B.LAWS_AND_REGULATIONS, data_category=PRI)),
            rules=("R1", "R3", "R6", "R9", "R13"),
            evidence={},
        ),
        id="R9-allow-referable-data-under-art27-1-exception",
    ),
    pytest.param(
        deny(
            "pri_basis_not_applicable",
            item=item(legal_basis=B.PRI_CONSENT_CONFIRMED, pri_confirmation="CONF-1"),
            contract=contract(purpose=bases(B.PRI_CONSENT_CONFIRMED)),
            rules=R9_RULES,
            evidence={},
        ),
        id="R9-deny-pri-basis-on-ordinary-personal-data",
    ),
]

R11_RULES = ("R1", "R2", "R6", "R11", "R13")
R11 = [
    pytest.param(
        deny("discontinued", state=state(grant(), stops=(stop(),)), rules=R11_RULES),
        id="R11-deny-discontinued-for-every-partner",
    ),
    pytest.param(
        deny("discontinued", state=state(grant(), stops=(stop((PARTNER,)),)), rules=R11_RULES),
        id="R11-deny-discontinued-for-this-partner",
    ),
    pytest.param(
        deny("discontinued", state=state(grant(), stops=(stop(at=NOW),)), rules=R11_RULES),
        id="R11-deny-request-made-exactly-now",
    ),
    pytest.param(
        deny(
            "discontinued",
            state=state(grant(), stops=(stop(at=datetime(2026, 7, 1, 9, 0)),)),
            rules=R11_RULES,
        ),
        id="R11-deny-request-time-without-timezone-fails-closed",
    ),
    pytest.param(
        Case(state=state(grant(), stops=(stop(("other-partner",)),))),
        id="R11-allow-discontinued-for-another-partner-only",
    ),
    pytest.param(
        Case(state=state(grant(), stops=(stop(at=NOW + timedelta(hours=1)),))),
        id="R11-allow-request-dated-after-now",
    ),
    pytest.param(
        Case(
            item=item(legal_basis=B.PROTECT_LIFE_BODY_PROPERTY, **APPROVAL),
            contract=contract(purpose=bases(B.PROTECT_LIFE_BODY_PROPERTY)),
            state=state(stops=(stop(),)),
            codes=("discontinuance_exempt",),
            rules=("R1", "R3", "R6", "R11", "R13"),
            evidence=APPROVAL,
        ),
        id="R11-allow-life-body-property-overrides-and-says-so",
    ),
    pytest.param(
        deny(
            "exception_approver_missing",
            item=item(legal_basis=B.PROTECT_LIFE_BODY_PROPERTY, rationale="Chargeback wave"),
            contract=contract(purpose=bases(B.PROTECT_LIFE_BODY_PROPERTY)),
            state=state(stops=(stop(),)),
            rules=("R1", "R3", "R6", "R11", "R13"),
            evidence={"rationale": "Chargeback wave"},
        ),
        id="R11-deny-an-exception-not-validly-claimed-says-no-override",
    ),
    pytest.param(
        Case(
            item=item(legal_basis=B.LAWS_AND_REGULATIONS),
            contract=contract(purpose=bases(B.LAWS_AND_REGULATIONS)),
            state=state(stops=(stop(),)),
            codes=("discontinuance_exempt",),
            rules=("R1", "R3", "R6", "R11", "R13"),
            evidence={},
        ),
        id="R11-allow-laws-and-regulations-overrides-and-says-so",
    ),
    pytest.param(
        deny(
            "discontinued",
            item=item(legal_basis=B.ACADEMIC_PUBLICATION),
            contract=contract(purpose=bases(B.ACADEMIC_PUBLICATION)),
            state=state(stops=(stop(),)),
            rules=("R1", "R3", "R6", "R11", "R13"),
            evidence={},
        ),
        id="R11-deny-academic-exception-is-not-exempt",
    ),
    pytest.param(
        deny(
            "discontinued",
            item=item(legal_basis=B.ENTRUSTMENT),
            contract=contract(purpose=ENTRUST, **FRAUD),
            state=state(stops=(stop(),)),
            rules=("R1", "R4", "R6", "R11", "R13"),
            evidence={},
        ),
        id="R11-deny-entrustment-is-not-exempt",
    ),
]


def pseudo(basis: LegalBasis, **update: Any) -> PartnerContract:
    return contract(purpose=bases(basis, data_category=PSEUDO), **update)


R12 = [
    pytest.param(
        deny(
            "pseudonymized_provision_banned",
            contract=pseudo(B.CONSENT),
            rules=("R1", "R2", "R6", "R12", "R13"),
        ),
        id="R12-deny-pseudonymized-even-with-consent",
    ),
    pytest.param(
        deny(
            "pseudonymized_provision_banned",
            item=item(legal_basis=B.PROTECT_LIFE_BODY_PROPERTY, **APPROVAL),
            contract=pseudo(B.PROTECT_LIFE_BODY_PROPERTY),
            rules=("R1", "R3", "R6", "R12", "R13"),
            evidence=APPROVAL,
        ),
        id="R12-deny-pseudonymized-under-life-body-property",
    ),
    pytest.param(
        Case(
            item=item(legal_basis=B.LAWS_AND_REGULATIONS),
            contract=pseudo(B.LAWS_AND_REGULATIONS),
            rules=("R1", "R3", "R6", "R12", "R13"),
            evidence={},
        ),
        id="R12-allow-pseudonymized-under-laws",
    ),
    pytest.param(
        Case(
            item=item(legal_basis=B.ENTRUSTMENT),
            contract=pseudo(B.ENTRUSTMENT, **FRAUD),
            rules=("R1", "R4", "R6", "R12", "R13"),
            evidence={},
        ),
        id="R12-allow-pseudonymized-under-entrustment",
    ),
    pytest.param(
        Case(
            item=item(legal_basis=B.BUSINESS_SUCCESSION),
            contract=pseudo(B.BUSINESS_SUCCESSION),
            rules=("R1", "R4", "R6", "R12", "R13"),
            evidence={},
        ),
        id="R12-allow-pseudonymized-under-business-succession",
    ),
]

R13 = [
    pytest.param(
        Case(
            item=item(fields=("phone", "postal_code", "email", "full_name")),
            codes=("fields_dropped",),
            dropped=("phone", "full_name"),
        ),
        id="R13-allow-unlisted-fields-dropped-and-reported",
    ),
    pytest.param(
        Case(
            item=item(fields=("email", "email", "phone", "phone")),
            codes=("fields_dropped",),
            sent=("email",),
            dropped=("phone",),
        ),
        id="R13-allow-duplicate-field-names-collapse",
    ),
    pytest.param(
        Case(item=item(fields=("birth_year", "postal_code", "email")), sent=CONTRACT_FIELDS),
        id="R13-allow-every-field-listed-nothing-to-report",
    ),
    pytest.param(
        deny(
            "no_fields",
            "fields_dropped",
            item=item(fields=("phone", "full_name")),
            dropped=("phone", "full_name"),
        ),
        id="R13-deny-everything-dropped-leaves-nothing-to-send",
    ),
    pytest.param(
        deny(
            "consent_missing",
            "fields_dropped",
            item=item(fields=("email", "phone")),
            state=NO_CONSENT,
            evidence={},
            dropped=("phone",),
        ),
        id="R13-drop-still-reported-when-denied-for-another-reason",
    ),
]

COMBINED = [
    pytest.param(
        deny(
            "contract_not_in_force",
            "consent_withdrawn",
            "cross_border_basis_inconsistent",
            "discontinued",
            "pseudonymized_provision_banned",
            "fields_dropped",
            item=item(fields=("email", "phone")),
            contract=pseudo(
                B.CONSENT,
                country="US",
                agreement=Agreement(
                    reference="A", valid_from=date(2024, 1, 1), valid_until=date(2025, 1, 1)
                ),
            ),
            state=state(grant(action=ConsentAction.WITHDRAW), stops=(stop(),)),
            rules=("R1", "R2", "R6", "R11", "R12", "R13"),
            cross_border=None,
            evidence={},
            dropped=("phone",),
        ),
        id="all-denials-reported-at-once",
    ),
]


@pytest.mark.parametrize("case", R1 + R2 + R3 + R4 + R5 + R6 + R9 + R11 + R12 + R13 + COMBINED)
def test_decide(case: Case) -> None:
    decision = decide(case.item, case.contract, case.state, case.now)

    assert [r.code for r in decision.reasons] == list(case.codes)
    assert decision.allowed is case.allowed
    assert decision.rule_ids == case.rules
    assert decision.cross_border_basis == case.cross_border
    assert decision.evidence == case.evidence
    default_sent = SENT if case.allowed else ()
    assert decision.fields_sent == (default_sent if case.sent is None else case.sent)
    assert decision.fields_dropped == case.dropped
    purpose = case.contract.purposes.get(case.item.purpose)
    assert decision.data_category == (purpose.data_category if purpose else None)
    assert (decision.subject_id, decision.partner_id, decision.purpose) == (
        case.item.subject_id,
        case.contract.id,
        case.item.purpose,
    )
    assert decision.legal_basis == case.item.legal_basis
    assert_well_formed(decision, case.item)
    for reason in decision.reasons:  # the case table's field names are all words of 5+ letters
        assert not any(f in reason.message for f in case.item.fields)


def assert_well_formed(decision: Decision, request: ProvisionItem) -> None:
    """What holds for every decision, whatever the inputs."""
    for reason in decision.reasons:
        assert reason.rule == REASON_RULES[reason.code]
        assert reason.rule in decision.rule_ids
        # Messages are for humans and logs: never a caller's value (subject id, field names).
        assert request.subject_id.strip() == "" or request.subject_id not in reason.message
    assert decision.rule_ids == tuple(r for r in RULE_ORDER if r in decision.rule_ids)
    assert decision.allowed == (not any(r.code in DENIAL_CODES for r in decision.reasons))
    if not decision.allowed:
        assert decision.fields_sent == ()


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(item(), BASE, GRANTED, datetime(2026, 6, 1, 12, 0))


def test_now_in_any_timezone_is_read_as_a_japanese_date() -> None:
    eastern = NOW.astimezone(JST).replace(hour=0, minute=30).astimezone(UTC)  # still May 31 UTC
    expired = contract(
        agreement=Agreement(
            reference="A", valid_from=date(2026, 1, 1), valid_until=date(2026, 5, 31)
        )
    )
    assert eastern.date() == date(2026, 5, 31)
    assert not decide(item(), expired, GRANTED, eastern).allowed


def test_every_reason_code_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "policy.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `([a-z0-9_]+)` \| (R\d+) \| (deny|inform) \|", doc, re.MULTILINE)
    assert {code: rule for code, rule, _ in rows} == dict(REASON_RULES)
    assert {code for code, _, kind in rows if kind == "inform"} == INFORMATIONAL_CODES
    assert len(rows) == len(REASON_RULES)  # each code once


def test_codes_are_stable_snake_case() -> None:
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", code) for code in REASON_RULES)
    assert DENIAL_CODES.isdisjoint(INFORMATIONAL_CODES)
    assert set(REASON_RULES) == DENIAL_CODES | INFORMATIONAL_CODES


# --- properties -----------------------------------------------------------------------------

FIELD_NAMES = st.one_of(st.sampled_from(CONTRACT_FIELDS), st.text(min_size=1, max_size=12))


@given(requested=st.lists(FIELD_NAMES, max_size=8), consented=st.booleans())
def test_minimisation_partitions_the_request(requested: list[str], consented: bool) -> None:
    decision = decide(
        item(fields=tuple(requested)), BASE, GRANTED if consented else NO_CONSENT, NOW
    )
    sent, dropped = set(decision.fields_sent), set(decision.fields_dropped)

    assert sent.isdisjoint(dropped)
    assert sent <= set(CONTRACT_FIELDS)
    assert dropped == set(requested) - set(CONTRACT_FIELDS)
    assert len(decision.fields_dropped) == len(dropped)  # no duplicates
    assert decision.fields_sent == tuple(f for f in CONTRACT_FIELDS if f in sent)  # contract order
    if consented:
        assert sent | dropped == set(requested)
        assert decision.allowed == bool(sent)
    else:
        assert not decision.allowed
        assert sent == set()
    assert ("fields_dropped" in [r.code for r in decision.reasons]) == bool(dropped)


# Each draw leans towards a valid value, so that allowed decisions are common enough for the
# invariants below to be exercised, while every kind of flaw still turns up.
AROUND_NOW = st.sampled_from(
    [timedelta(days=-400), timedelta(days=-400), timedelta(0), timedelta(seconds=1)]
).map(lambda d: NOW + d)
SINCE = st.sampled_from([date(2025, 1, 1)] * 4 + [TODAY, TODAY + timedelta(days=1)])
UNTIL = st.sampled_from([date(2027, 1, 1)] * 4 + [TODAY, TODAY - timedelta(days=1)])
MOSTLY = st.sampled_from([True, True, True, False])
MAYBE_TEXT = st.sampled_from(["fd-1", "fd-1", "v2", None, "", " "])
FOREIGN_BASES = [X.DESIGNATED_COUNTRY, X.EQUIVALENT_MEASURES, X.FOREIGN_CONSENT]


@st.composite
def cross_borders(draw: st.DrawFn) -> dict[str, Any]:
    country = draw(st.sampled_from(["JP", "JP", "US", "DE", "SG"]))
    coherent = [X.DOMESTIC] if country == "JP" else FOREIGN_BASES
    basis = draw(st.sampled_from(coherent) | st.sampled_from(CrossBorderBasis))
    cross_border = CrossBorder(
        basis=basis,
        foreign_disclosure_version=draw(st.sampled_from(["fd-1", "fd-1", "fd-2", None])),
        equivalent_measures_review_due=draw(st.none() | UNTIL),
    )
    return {"country": country, "cross_border": cross_border}


@st.composite
def partners(draw: st.DrawFn, basis: LegalBasis) -> PartnerContract:
    listed = draw(st.sets(st.sampled_from(LegalBasis), max_size=2))
    if draw(MOSTLY):
        listed.add(basis)  # the contract usually allows what is claimed
    purpose = BASE_PURPOSE.model_copy(
        update={
            "legal_bases": tuple(sorted(listed or {B.CONSENT})),
            "data_category": draw(st.sampled_from([PERSONAL] * 3 + list(DataCategory))),
            "exception_rationale": draw(MAYBE_TEXT),
            "exception_approver": draw(MAYBE_TEXT),
        }
    )
    joint_use = JointUse(
        published_at=draw(SINCE),
        data_items=("email",),
        joint_users="g",
        purpose="p",
        responsible_party="r",
    )
    update = {
        "kind": draw(st.sampled_from(PartnerKind)),
        "recipient_matches_records": draw(st.booleans()),
        "agreement": Agreement(reference="A", valid_from=draw(SINCE), valid_until=draw(UNTIL)),
        "purposes": {PURPOSE: purpose},
        "joint_use": draw(st.none() | st.just(joint_use)),
        **draw(cross_borders()),
    }
    return BASE.model_copy(update=update)


CONSENTS = st.just(grant(foreign_disclosure_version="fd-1")) | st.builds(
    grant,
    action=st.sampled_from(ConsentAction),
    effective_at=AROUND_NOW,
    notice_version=MAYBE_TEXT,
    channel=MAYBE_TEXT,
    foreign_disclosure_version=MAYBE_TEXT,
)
STOPS = st.builds(stop, partners=st.sampled_from([None, (PARTNER,), ("x",), ("x",)]), at=AROUND_NOW)


LISTED = st.sampled_from([[], ["email"], ["birth_year"], ["postal_code", "email"]])


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ProvisionItem, PartnerContract, SubjectState]:
    basis = draw(st.sampled_from([B.CONSENT] * 6 + list(LegalBasis)))
    request = item(
        legal_basis=basis,
        fields=(*draw(st.lists(FIELD_NAMES, max_size=3)), *draw(LISTED)),
        rationale=draw(MAYBE_TEXT),
        approver=draw(MAYBE_TEXT),
        pri_confirmation=draw(MAYBE_TEXT),
    )
    consents = draw(st.lists(CONSENTS, max_size=1))
    stops = draw(st.lists(STOPS, max_size=1))
    person = state(*consents, stops=tuple(stops))
    if not draw(MOSTLY):  # someone else's state handed over by mistake
        person = person.model_copy(update={"subject_id": "bob"})
    return request, draw(partners(basis)), person


@settings(max_examples=500)
@given(scenario=scenarios())
def test_no_denial_ever_slips_through(
    scenario: tuple[ProvisionItem, PartnerContract, SubjectState],
) -> None:
    request, partner, person = scenario
    decision = decide(request, partner, person, NOW)
    assert_well_formed(decision, request)
    if decision.allowed:
        # Independent of how decide() is written: what the law says of anything allowed.
        assert_basis_held(decision, request, partner, person)
        assert_cross_border_held(decision, request, partner)


def assert_basis_held(
    decision: Decision, request: ProvisionItem, partner: PartnerContract, person: SubjectState
) -> None:
    basis, purpose = request.legal_basis, partner.purposes[PURPOSE]
    assert basis != B.OPT_OUT
    assert basis in purpose.legal_bases
    assert partner.in_force(TODAY)
    assert person.subject_id == request.subject_id
    assert decision.fields_sent
    assert set(decision.fields_sent) <= set(request.fields)
    if basis == B.CONSENT:
        consent = person.consents[PURPOSE]
        assert consent.action == ConsentAction.GRANT
        assert consent.effective_at <= NOW
        assert (consent.notice_version or "").strip()
        assert (consent.channel or "").strip()
    if basis in APPROVAL_REQUIRED:
        # A pair: the request's when it names either, else the contract's standing one.
        given_pair = (request.rationale, request.approver)
        on_contract = (purpose.exception_rationale, purpose.exception_approver)
        pair = given_pair if any((v or "").strip() for v in given_pair) else on_contract
        assert (decision.evidence["rationale"], decision.evidence["approver"]) == pair
    if basis == B.ENTRUSTMENT:
        assert not partner.recipient_matches_records
        assert partner.kind == PartnerKind.FRAUD_CHECK
    if purpose.data_category == PSEUDO:
        assert basis in {B.LAWS_AND_REGULATIONS, B.ENTRUSTMENT, B.BUSINESS_SUCCESSION, B.JOINT_USE}
    if purpose.data_category == PRI and basis not in ART27_1_EXCEPTIONS:
        assert (decision.evidence["pri_confirmation"] or "").strip()
    stopped = any(d.covers(PARTNER) and d.requested_at <= NOW for d in person.discontinuances)
    if stopped:
        assert basis in APPROVAL_REQUIRED | {B.LAWS_AND_REGULATIONS}


def assert_cross_border_held(
    decision: Decision, request: ProvisionItem, partner: PartnerContract
) -> None:
    standing = partner.cross_border
    if partner.country == "JP":
        assert standing.basis == X.DOMESTIC
        assert decision.cross_border_basis == X.DOMESTIC
        return
    assert standing.basis != X.DOMESTIC
    if request.legal_basis in ART27_1_EXCEPTIONS:
        assert decision.cross_border_basis == X.ART27_1_EXCEPTION
        return
    assert decision.cross_border_basis == standing.basis
    if standing.basis == X.DESIGNATED_COUNTRY:
        assert partner.country in {"DE"}  # of the countries drawn, only Germany is designated
    elif standing.basis == X.EQUIVALENT_MEASURES:
        assert standing.equivalent_measures_review_due is not None
        assert standing.equivalent_measures_review_due >= TODAY
    else:
        assert standing.basis == X.FOREIGN_CONSENT
        assert standing.foreign_disclosure_version is not None
        assert (
            decision.evidence["foreign_disclosure_version"] == standing.foreign_disclosure_version
        )
        assert request.legal_basis not in {B.ENTRUSTMENT, B.JOINT_USE}


# Two small worlds where the whole law fits in one line, checked exactly (allowed iff ...).

# A grant with up to two flaws, so that each flaw, alone or with another, turns up often.
FLAWS: st.SearchStrategy[dict[str, Any]] = st.sampled_from(
    [
        {"action": ConsentAction.WITHDRAW},
        {"effective_at": NOW + timedelta(seconds=1)},
        {"effective_at": NOW},  # not a flaw: the boundary
        {"notice_version": None},
        {"notice_version": " "},
        {"channel": None},
        {"channel": ""},
        {"foreign_disclosure_version": "fd-us-2"},
        {"foreign_disclosure_version": None},
    ]
)
GRANTS = st.lists(FLAWS, max_size=2).map(
    lambda flaws: grant(**{k: v for f in flaws for k, v in f.items()})
)
PUBLISHED = JointUse(
    published_at=date(2025, 1, 1),
    data_items=("email",),
    joint_users="Acme group",
    purpose="Member services",
    responsible_party="Acme HD",
)


def holds(consent: ConsentEvent | None) -> bool:
    """A current grant with its evidence, stated from the requirements (rule 2)."""
    return (
        consent is not None
        and consent.action == ConsentAction.GRANT
        and consent.effective_at <= NOW
        and bool((consent.notice_version or "").strip())
        and bool((consent.channel or "").strip())
    )


@given(
    basis=st.sampled_from(
        [B.CONSENT, B.BUSINESS_SUCCESSION, B.ENTRUSTMENT, B.JOINT_USE, B.LAWS_AND_REGULATIONS]
    ),
    consent=st.none() | GRANTS,
)
def test_foreign_consent_recipient_exactly(basis: LegalBasis, consent: ConsentEvent | None) -> None:
    # A non-matching US recipient, so only Art. 28 stands between entrustment and the wire.
    partner = contract(purpose=bases(basis), joint_use=PUBLISHED, **{**US_FOREIGN_CONSENT, **FRAUD})
    person = state(*([consent] if consent else []))
    decision = decide(item(legal_basis=basis), partner, person, NOW)

    pointed_to = consent.foreign_disclosure_version if consent else None
    expected = basis == B.LAWS_AND_REGULATIONS or (
        basis == B.CONSENT and holds(consent) and pointed_to == "fd-us-3"
    )
    assert decision.allowed == expected


@given(
    basis=st.sampled_from(
        [B.CONSENT, B.LAWS_AND_REGULATIONS, B.PUBLIC_HEALTH_CHILDREN, B.ACADEMIC_RECIPIENT]
    ),
    consent=st.none() | GRANTS,
    stops=st.lists(STOPS, max_size=2),
)
def test_domestic_consent_and_discontinuance_exactly(
    basis: LegalBasis, consent: ConsentEvent | None, stops: list[Discontinuance]
) -> None:
    partner = contract(purpose=bases(basis))
    person = state(*([consent] if consent else []), stops=tuple(stops))
    decision = decide(item(legal_basis=basis, **APPROVAL), partner, person, NOW)

    stopped = any(d.partners in (None, (PARTNER,)) and d.requested_at <= NOW for d in stops)
    basis_holds = holds(consent) if basis == B.CONSENT else True
    exempt = basis in {B.LAWS_AND_REGULATIONS, B.PUBLIC_HEALTH_CHILDREN}  # Art. 27(1)(i), (iii)
    assert decision.allowed == (basis_holds and (exempt or not stopped))
    assert ("discontinuance_exempt" in [r.code for r in decision.reasons]) == (exempt and stopped)


@given(
    basis=st.sampled_from([B.PRI_CONSENT_CONFIRMED, B.CONSENT, B.LAWS_AND_REGULATIONS]),
    category=st.sampled_from([PRI, PERSONAL]),
    confirmation=st.sampled_from([None, "", " ", "CONF-2026-0042"]),
)
def test_personally_referable_exactly(
    basis: LegalBasis, category: DataCategory, confirmation: str | None
) -> None:
    listed = (B.PRI_CONSENT_CONFIRMED, B.CONSENT, B.LAWS_AND_REGULATIONS)
    partner = contract(purpose=bases(*listed, data_category=category))
    decision = decide(item(legal_basis=basis, pri_confirmation=confirmation), partner, GRANTED, NOW)

    confirmed = basis == B.PRI_CONSENT_CONFIRMED and bool((confirmation or "").strip())
    if category == PRI:  # Art. 31(1): the recipient's confirmation, or an Art. 27(1) exception
        expected = confirmed or basis == B.LAWS_AND_REGULATIONS
    else:
        expected = basis != B.PRI_CONSENT_CONFIRMED
    assert decision.allowed == expected
    assert ("pri_confirmation" in decision.evidence) == (confirmed and category == PRI)
