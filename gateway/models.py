"""Frozen value types shared by the layers: vocabularies, consent, clients, provisions.

Everything here is data. No I/O, no clock: callers pass time in.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

# Contract, joint-use and review dates are Japanese calendar dates. Japan has no daylight saving
# time, so a fixed UTC+9 offset is exact and needs no tz database.
JST = timezone(timedelta(hours=9), "JST")


def japan_date(now: datetime) -> date:
    """The date in Japan at `now` (aware): what a contract's dates are judged against."""
    return now.astimezone(JST).date()


class Frozen(BaseModel):
    """Base for every shared model: immutable, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Role(StrEnum):
    """What an API client may do (requirements: three kinds of users, plus administration)."""

    SENDER = "sender"  # provisions and exports, for its own partners only
    FRAUD = "fraud"  # fraud checks
    COMPLIANCE = "compliance"  # read logs, consents, reports
    ADMIN = "admin"  # consents, clients
    # A partner's own credential, minted for that one partner: it posts what the partner sends
    # back (an attribute-estimation summary) and nothing else.
    RECIPIENT = "recipient"


class LegalBasis(StrEnum):
    """The legal basis a provision claims (requirements, legal-basis vocabulary)."""

    CONSENT = "consent"  # APPI Art. 27(1) main clause
    LAWS_AND_REGULATIONS = "laws_and_regulations"  # Art. 27(1)(i)
    PROTECT_LIFE_BODY_PROPERTY = "protect_life_body_property"  # Art. 27(1)(ii)
    PUBLIC_HEALTH_CHILDREN = "public_health_children"  # Art. 27(1)(iii)
    COOPERATE_PUBLIC_BODY = "cooperate_public_body"  # Art. 27(1)(iv)
    ACADEMIC_PUBLICATION = "academic_publication"  # Art. 27(1)(v)
    ACADEMIC_JOINT_RESEARCH = "academic_joint_research"  # Art. 27(1)(vi)
    ACADEMIC_RECIPIENT = "academic_recipient"  # Art. 27(1)(vii)
    ENTRUSTMENT = "entrustment"  # Art. 27(5)(i)
    BUSINESS_SUCCESSION = "business_succession"  # Art. 27(5)(ii)
    JOINT_USE = "joint_use"  # Art. 27(5)(iii)
    PRI_CONSENT_CONFIRMED = "pri_consent_confirmed"  # Art. 31
    ANONYMIZED_PUBLISHED = "anonymized_published"  # Art. 43-44
    # Art. 27(2) opt-out provision exists in law; the gateway recognises the word only to refuse
    # it with a reason (requirements rule 5: off by design).
    OPT_OUT = "opt_out"


# Art. 27(1)(i)-(vii): provision without consent.
ART27_1_EXCEPTIONS: frozenset[LegalBasis] = frozenset(
    {
        LegalBasis.LAWS_AND_REGULATIONS,
        LegalBasis.PROTECT_LIFE_BODY_PROPERTY,
        LegalBasis.PUBLIC_HEALTH_CHILDREN,
        LegalBasis.COOPERATE_PUBLIC_BODY,
        LegalBasis.ACADEMIC_PUBLICATION,
        LegalBasis.ACADEMIC_JOINT_RESEARCH,
        LegalBasis.ACADEMIC_RECIPIENT,
    }
)
# Art. 27(1)(ii)-(iv): never automatic; a written rationale and a named approver (rule 3).
APPROVAL_REQUIRED: frozenset[LegalBasis] = frozenset(
    {
        LegalBasis.PROTECT_LIFE_BODY_PROPERTY,
        LegalBasis.PUBLIC_HEALTH_CHILDREN,
        LegalBasis.COOPERATE_PUBLIC_BODY,
    }
)
# Art. 27(5): the recipient is not a third party.
NOT_THIRD_PARTY: frozenset[LegalBasis] = frozenset(
    {LegalBasis.ENTRUSTMENT, LegalBasis.BUSINESS_SUCCESSION, LegalBasis.JOINT_USE}
)


class CrossBorderBasis(StrEnum):
    """How a provision satisfies APPI Art. 28 (foreign recipients)."""

    DOMESTIC = "domestic"
    DESIGNATED_COUNTRY = "designated_country"  # EU/EEA, UK (PPC Rules Art. 15)
    EQUIVALENT_MEASURES = "equivalent_measures"  # reviewed periodically (PPC Rules Art. 18(1))
    FOREIGN_CONSENT = "foreign_consent"  # consent after the Art. 28(2) disclosure
    ART27_1_EXCEPTION = "art27_1_exception"  # Art. 28(1): the Art. 27(1) cases need no consent


class DataCategory(StrEnum):
    """What kind of data a purpose sends."""

    PERSONAL_DATA = "personal_data"
    PERSONALLY_REFERABLE = "personally_referable"  # Art. 31 (cookie, device ids)
    PSEUDONYMIZED = "pseudonymized"  # Art. 41-42
    ANONYMIZED = "anonymized"  # Art. 43-44
    STATISTICS = "statistics"


class Transform(StrEnum):
    """How a field is transformed before it leaves."""

    SHA256 = "sha256"  # normalized per the identifier profile, then SHA-256 (hex)
    HMAC = "hmac"  # keyed HMAC-SHA256 under the pseudonymization key
    CLEAR = "clear"  # sent as normalized, in clear
    PREHASHED = "prehashed"  # the caller sent a SHA-256 already; checked and passed through


class PartnerKind(StrEnum):
    CUSTOMER_MATCH = "customer_match"
    FRAUD_CHECK = "fraud_check"
    ATTRIBUTE_EXPORT = "attribute_export"


class ConsentAction(StrEnum):
    GRANT = "grant"
    WITHDRAW = "withdraw"


class ConsentEvent(Frozen):
    """One entry of a subject's append-only consent history (APPI Art. 27(1), rule 2).

    The current state of a (subject, purpose) is the event with the latest `effective_at`
    (ties: the later `seq`); nothing is ever overwritten.
    """

    seq: int | None = None  # assigned by the store
    subject_id: str
    purpose: str
    action: ConsentAction
    effective_at: datetime  # grant: when consent was obtained; withdraw: when withdrawn
    notice_version: str | None = None  # grant evidence: the privacy-notice version shown
    channel: str | None = None  # grant evidence: web, app, store, paper, ...
    foreign_disclosure_version: str | None = None  # Art. 28(2) disclosure the person saw
    recorded_at: datetime
    recorded_by: str  # client id, or "import:<client id>"


class Discontinuance(Frozen):
    """A person's request to stop third-party provision (APPI Art. 35, rule 11)."""

    seq: int | None = None
    subject_id: str
    partners: tuple[str, ...] | None  # None: every partner
    reason: str
    requested_at: datetime
    recorded_by: str

    @field_serializer("partners")
    def _all_partners(self, partners: tuple[str, ...] | None) -> tuple[str, ...] | Literal["all"]:
        """Shown as it was asked for: "all", not null."""
        return "all" if partners is None else partners

    def covers(self, partner_id: str) -> bool:
        return self.partners is None or partner_id in self.partners


class SubjectState(Frozen):
    """What the policy engine knows about one person: current consents and discontinuances."""

    subject_id: str
    consents: dict[str, ConsentEvent] = Field(default_factory=dict)  # purpose -> latest event
    discontinuances: tuple[Discontinuance, ...] = ()


class ClientRecord(Frozen):
    """An API client. The key itself is never stored: only its SHA-256."""

    client_id: str
    name: str
    role: Role
    partners: tuple[str, ...] = ()
    key_sha256: str  # hex
    created_at: datetime
    revoked_at: datetime | None = None
