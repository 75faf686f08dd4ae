"""The policy engine: decide one provision of one person's record under APPI.

`decide(item, contract, state, now)` applies the rules of requirements.md, "The law in rules"
(R1-R6, R9, R11-R13), and returns a `Decision` that carries every reason found: the engine does
not stop at the first denial, so a caller learns everything wrong with a request at once.

Pure: no I/O, no clock (time is passed in as `now`), no logging. One small function per rule
returns a `_Check`; `decide` composes them in rule order. A reason message is a fixed sentence
from `_REASONS`: it never interpolates a caller's value (subject id, purpose, field name), so a
message can never leak an email or a phone number. docs/policy.md documents every code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from types import MappingProxyType

from gateway.contracts import EEA_AND_UK, PSEUDONYMIZED_BASES, PartnerContract, Purpose
from gateway.models import (
    APPROVAL_REQUIRED,
    ART27_1_EXCEPTIONS,
    NOT_THIRD_PARTY,
    ConsentAction,
    ConsentEvent,
    CrossBorderBasis,
    DataCategory,
    Frozen,
    LegalBasis,
    PartnerKind,
    SubjectState,
)
from gateway.models import JST as JST  # re-exported: contract dates are judged in Japan

# Art. 35 is honoured for every basis except the Art. 27(1)(i)-(iv) cases, where the law itself
# requires or permits the provision regardless of the person's wish (laws, life/body/property,
# public health, public bodies). The academic cases (v)-(vii) and Art. 27(5) are not exempt.
DISCONTINUANCE_EXEMPT: frozenset[LegalBasis] = APPROVAL_REQUIRED | {LegalBasis.LAWS_AND_REGULATIONS}

# Requirements rule 4: these kinds match our data person by person (Customer Match) or estimate
# attributes over pooled data, so they are third parties whatever the contract's flag says.
MATCHING_KINDS = frozenset({PartnerKind.CUSTOMER_MATCH, PartnerKind.ATTRIBUTE_EXPORT})


class ProvisionItem(Frozen):
    """One requested provision of one person's record to one partner."""

    subject_id: str
    purpose: str
    legal_basis: LegalBasis
    fields: tuple[str, ...]  # names of the non-empty fields the caller sent, besides subject_id
    rationale: str | None = None  # written rationale for an Art. 27(1) exception
    approver: str | None = None  # named approver for an Art. 27(1) exception
    pri_confirmation: str | None = None  # the recipient's confirmation reference (Art. 31)


class Reason(Frozen):
    code: str  # stable snake_case code, documented in docs/policy.md
    message: str  # one fixed sentence; never contains a field value
    rule: str  # the rule id that produced it


class Decision(Frozen):
    subject_id: str
    partner_id: str
    purpose: str
    allowed: bool
    legal_basis: LegalBasis
    cross_border_basis: CrossBorderBasis | None  # None when it could not be determined
    data_category: DataCategory | None  # None when the purpose is unknown
    reasons: tuple[Reason, ...]  # every denial found, plus informational reasons
    rule_ids: tuple[str, ...]  # the rules that applied, in rule order, no duplicates
    fields_sent: tuple[str, ...]  # in the contract's order; empty when denied
    fields_dropped: tuple[str, ...]  # requested but not in the contract, in request order
    evidence: dict[str, str]  # what the Art. 29 record must carry for the basis


# code -> (rule, message). Messages are constant: nothing from the request is ever interpolated.
_REASONS: dict[str, tuple[str, str]] = {
    "subject_id_missing": ("R1", "The request carries no subject id."),
    "subject_mismatch": ("R1", "The consent state given belongs to another subject."),
    "contract_not_in_force": ("R1", "The partner agreement is not in force on this date."),
    "unknown_purpose": ("R1", "The partner contract does not list this purpose."),
    "basis_not_in_contract": ("R1", "The contract does not allow this legal basis here."),
    "anonymized_basis_not_applicable": ("R1", "This purpose does not send anonymized data."),
    "no_fields": ("R1", "No requested field is listed in the contract for this purpose."),
    "consent_missing": ("R2", "The person has no current consent for this purpose."),
    "consent_withdrawn": ("R2", "The person withdrew consent for this purpose."),
    "consent_evidence_missing": ("R2", "The consent lacks notice version, channel or time."),
    "exception_rationale_missing": ("R3", "This exception needs a written rationale."),
    "exception_approver_missing": ("R3", "This exception needs a named approver."),
    "entrustment_invalid_matching": ("R4", "The recipient matches or pools data: not entrustment."),
    "joint_use_not_published": ("R4", "The joint-use items were not published by this date."),
    "opt_out_not_offered": ("R5", "The gateway does not offer opt-out provision."),
    "cross_border_basis_inconsistent": ("R6", "The contract's country and basis contradict."),
    "country_not_designated": ("R6", "The recipient's country is not EU/EEA or UK."),
    "equivalent_measures_review_missing": ("R6", "No equivalent-measures review date is set."),
    "equivalent_measures_review_overdue": ("R6", "The equivalent-measures review is overdue."),
    "foreign_consent_missing": ("R6", "No current consent to provision to this foreign party."),
    "foreign_disclosure_version_mismatch": ("R6", "The consent saw another foreign disclosure."),
    "foreign_disclosure_version_missing": ("R6", "The contract names no foreign disclosure."),
    "not_available_for_foreign_recipient": ("R6", "Not available for this foreign recipient."),
    "art27_1_exception_required": ("R6", "This recipient needs an Art. 27(1) exception basis."),
    "pri_basis_required": ("R9", "Personally referable data needs pri_consent_confirmed."),
    "pri_confirmation_missing": ("R9", "The recipient's consent confirmation is missing."),
    "pri_basis_not_applicable": ("R9", "This purpose does not send personally referable data."),
    "discontinued": ("R11", "The person asked to stop provision to this partner."),
    "discontinuance_exempt": ("R11", "The person asked to stop; this legal exception overrides."),
    "pseudonymized_provision_banned": ("R12", "Pseudonymized data may not go on this basis."),
    "fields_dropped": ("R13", "Fields not listed in the contract were dropped, not sent."),
}

# Reasons that inform without denying. Any other code denies (fail closed).
INFORMATIONAL_CODES: frozenset[str] = frozenset({"fields_dropped", "discontinuance_exempt"})
DENIAL_CODES: frozenset[str] = frozenset(_REASONS) - INFORMATIONAL_CODES
REASON_RULES: Mapping[str, str] = MappingProxyType({c: r for c, (r, _) in _REASONS.items()})


@dataclass(frozen=True)
class _Check:
    """What one rule found: whether it applied, its reasons, and the evidence to record."""

    rule: str
    applied: bool
    reasons: tuple[Reason, ...] = ()
    evidence: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Ctx:
    item: ProvisionItem
    contract: PartnerContract
    purpose: Purpose | None  # None: the contract does not list the purpose
    state: SubjectState
    now: datetime
    today: date  # now's date in Japan
    fields_sent: tuple[str, ...]  # after minimisation, before the verdict
    fields_dropped: tuple[str, ...]

    @property
    def basis(self) -> LegalBasis:
        return self.item.legal_basis


def _reason(code: str) -> Reason:
    rule, message = _REASONS[code]
    return Reason(code=code, message=message, rule=rule)


def _check(
    rule: str, codes: Iterable[str] = (), evidence: Mapping[str, str] | None = None
) -> _Check:
    return _Check(rule, True, tuple(_reason(c) for c in codes), dict(evidence or {}))


def _skip(rule: str) -> _Check:
    return _Check(rule, False)


def _present(value: str | None) -> str | None:
    """A blank string is no evidence at all."""
    return value if value is not None and value.strip() else None


def _minimise(
    requested: Iterable[str], purpose: Purpose | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """GDPR Art. 5(1)(c): (requested ∩ contract, in contract order; the rest, in request order)."""
    wanted = dict.fromkeys(requested)
    listed = purpose.fields if purpose is not None else {}
    return tuple(f for f in listed if f in wanted), tuple(f for f in wanted if f not in listed)


def _current_grant(ctx: _Ctx) -> tuple[ConsentEvent | None, str]:
    """The person's current grant for this purpose (Art. 27(1)), or None and the reason code."""
    event = ctx.state.consents.get(ctx.item.purpose)
    if event is None or event.subject_id != ctx.item.subject_id:
        return None, "consent_missing"
    if event.purpose != ctx.item.purpose:  # filed under another purpose: not this consent
        return None, "consent_missing"
    if event.action != ConsentAction.GRANT:
        return None, "consent_withdrawn"
    if event.effective_at.utcoffset() is None:  # a time we cannot place is no evidence
        return None, "consent_evidence_missing"
    if event.effective_at > ctx.now:  # consent not yet given is no consent
        return None, "consent_missing"
    if _present(event.notice_version) is None or _present(event.channel) is None:
        return None, "consent_evidence_missing"
    return event, ""


def _consent_evidence(grant: ConsentEvent) -> dict[str, str]:
    evidence = {
        "notice_version": str(grant.notice_version),
        "obtained_at": grant.effective_at.isoformat(),
        "channel": str(grant.channel),
    }
    if grant.foreign_disclosure_version is not None:
        evidence["foreign_disclosure_version"] = grant.foreign_disclosure_version
    return evidence


def _r1_default_deny(ctx: _Ctx) -> _Check:
    """Rule 1: a contract in force must allow the purpose, the basis and at least one field."""
    codes: list[str] = []
    if not ctx.item.subject_id.strip():
        codes.append("subject_id_missing")
    elif ctx.state.subject_id != ctx.item.subject_id:  # fail closed on someone else's state
        codes.append("subject_mismatch")
    if not ctx.contract.in_force(ctx.today):
        codes.append("contract_not_in_force")
    if ctx.purpose is None:
        codes.append("unknown_purpose")
        return _check("R1", codes)
    if ctx.basis not in ctx.purpose.legal_bases:
        codes.append("basis_not_in_contract")
    # Art. 43-44 covers anonymously processed information only; on anything else this basis
    # would let personal data out with no check at all.
    anonymized = ctx.purpose.data_category == DataCategory.ANONYMIZED
    if ctx.basis == LegalBasis.ANONYMIZED_PUBLISHED and not anonymized:
        codes.append("anonymized_basis_not_applicable")
    if not ctx.fields_sent:
        codes.append("no_fields")
    return _check("R1", codes)


def _r2_consent(ctx: _Ctx) -> _Check:
    """Rule 2, APPI Art. 27(1) main clause: per person, per purpose, with evidence."""
    if ctx.basis != LegalBasis.CONSENT:
        return _skip("R2")
    grant, code = _current_grant(ctx)
    if grant is None:
        return _check("R2", [code])
    return _check("R2", evidence=_consent_evidence(grant))


def _r3_exception(ctx: _Ctx) -> _Check:
    """Rule 3, APPI Art. 27(1)(i)-(vii); (ii)-(iv) need a written rationale and an approver."""
    if ctx.basis not in ART27_1_EXCEPTIONS:
        return _skip("R3")
    # The rationale and its approver are a pair: an approver approves a rationale. Take both from
    # the request when it carries either; otherwise both from the contract's standing exception.
    rationale, approver = _present(ctx.item.rationale), _present(ctx.item.approver)
    if rationale is None and approver is None and ctx.purpose is not None:
        rationale = _present(ctx.purpose.exception_rationale)
        approver = _present(ctx.purpose.exception_approver)
    evidence = {k: v for k, v in (("rationale", rationale), ("approver", approver)) if v}
    codes: list[str] = []
    if ctx.basis in APPROVAL_REQUIRED:  # Art. 27(1)(ii)-(iv): never automatic
        if rationale is None:
            codes.append("exception_rationale_missing")
        if approver is None:
            codes.append("exception_approver_missing")
    return _check("R3", codes, evidence)


def _r4_not_third_party(ctx: _Ctx) -> _Check:
    """Rule 4, APPI Art. 27(5): entrustment, business succession, published joint use."""
    if ctx.basis not in NOT_THIRD_PARTY:
        return _skip("R4")
    if ctx.basis == LegalBasis.ENTRUSTMENT:  # Art. 27(5)(i)
        # A recipient that matches person by person or pools clients' data uses it for itself:
        # that is a provision to a third party, not outsourcing (PPC guidance on entrustment).
        matching = ctx.contract.recipient_matches_records or ctx.contract.kind in MATCHING_KINDS
        return _check("R4", ["entrustment_invalid_matching"] if matching else [])
    if ctx.basis == LegalBasis.JOINT_USE:  # Art. 27(5)(iii): five items published beforehand
        joint_use = ctx.contract.joint_use
        if joint_use is None:
            return _check("R4", ["joint_use_not_published"])
        published = joint_use.published_at <= ctx.today
        evidence = {"joint_use_published_at": joint_use.published_at.isoformat()}
        return _check("R4", [] if published else ["joint_use_not_published"], evidence)
    return _check("R4")  # Art. 27(5)(ii) business succession: the contract listing it suffices


def _r5_opt_out(ctx: _Ctx) -> _Check:
    """Rule 5, APPI Art. 27(2): opt-out provision exists in law; the gateway never offers it."""
    if ctx.basis != LegalBasis.OPT_OUT:
        return _skip("R5")
    return _check("R5", ["opt_out_not_offered"])


def _r6_foreign_recipient(ctx: _Ctx) -> tuple[CrossBorderBasis | None, _Check]:
    """Rule 6, APPI Art. 28: the recipient's cross-border standing, and whether it holds."""
    contract_basis = ctx.contract.cross_border.basis
    domestic = ctx.contract.country == "JP"
    if domestic != (contract_basis == CrossBorderBasis.DOMESTIC):  # fail closed on a bad contract
        return None, _check("R6", ["cross_border_basis_inconsistent"])
    if domestic:
        return CrossBorderBasis.DOMESTIC, _check("R6")
    if ctx.basis in ART27_1_EXCEPTIONS:  # Art. 28(1): the Art. 27(1) cases need no consent
        return CrossBorderBasis.ART27_1_EXCEPTION, _check("R6")
    if contract_basis == CrossBorderBasis.DESIGNATED_COUNTRY:  # Art. 28(1), PPC Rules Art. 15
        designated = ctx.contract.country in EEA_AND_UK
        return contract_basis, _check("R6", [] if designated else ["country_not_designated"])
    if contract_basis == CrossBorderBasis.EQUIVALENT_MEASURES:
        return contract_basis, _r6_equivalent_measures(ctx)
    if contract_basis == CrossBorderBasis.FOREIGN_CONSENT:
        return contract_basis, _r6_foreign_consent(ctx)
    return contract_basis, _check("R6", ["art27_1_exception_required"])


def _r6_equivalent_measures(ctx: _Ctx) -> _Check:
    """Art. 28(1), (3), PPC Rules Art. 18(1): equivalent measures, reviewed periodically."""
    due = ctx.contract.cross_border.equivalent_measures_review_due
    if due is None:
        return _check("R6", ["equivalent_measures_review_missing"])
    evidence = {"equivalent_measures_review_due": due.isoformat()}
    return _check(
        "R6", [] if due >= ctx.today else ["equivalent_measures_review_overdue"], evidence
    )


def _r6_foreign_consent(ctx: _Ctx) -> _Check:
    """Art. 28(1)-(2): consent to provision to a foreign third party, after the disclosure."""
    codes: list[str] = []
    # Art. 28(1), last sentence: Art. 27 does not apply to this recipient, so none of Art. 27(5)
    # (entrustment, business succession, joint use) makes it "not a third party"; the contract
    # loader refuses the same three (gateway.contracts).
    if ctx.basis in NOT_THIRD_PARTY:
        codes.append("not_available_for_foreign_recipient")
    required = ctx.contract.cross_border.foreign_disclosure_version
    if required is None:
        codes.append("foreign_disclosure_version_missing")
    grant, _ = _current_grant(ctx)
    if grant is None:
        return _check("R6", [*codes, "foreign_consent_missing"])
    if required is not None and grant.foreign_disclosure_version != required:
        codes.append("foreign_disclosure_version_mismatch")
    return _check("R6", codes, _consent_evidence(grant))


def _r9_personally_referable(ctx: _Ctx) -> _Check:
    """Rule 9, APPI Art. 31(1): confirm the recipient obtained the person's consent."""
    if ctx.purpose is None:
        return _skip("R9")
    referable = ctx.purpose.data_category == DataCategory.PERSONALLY_REFERABLE
    if ctx.basis == LegalBasis.PRI_CONSENT_CONFIRMED and not referable:
        return _check("R9", ["pri_basis_not_applicable"])
    if not referable:
        return _skip("R9")
    if ctx.basis in ART27_1_EXCEPTIONS:  # Art. 31(1): "except in the cases of Art. 27(1)"
        return _check("R9")
    if ctx.basis != LegalBasis.PRI_CONSENT_CONFIRMED:
        return _check("R9", ["pri_basis_required"])
    confirmation = _present(ctx.item.pri_confirmation)
    if confirmation is None:
        return _check("R9", ["pri_confirmation_missing"])
    return _check("R9", evidence={"pri_confirmation": confirmation})  # Art. 31(3), Art. 30


def _in_effect(requested_at: datetime, now: datetime) -> bool:
    # Fail closed: a request whose time cannot be placed is taken as already in effect.
    return requested_at.utcoffset() is None or requested_at <= now


def _r11_discontinuance(ctx: _Ctx) -> _Check:
    """Rule 11, APPI Art. 35(3), (5): a request to stop applies before the next transfer."""
    stopped = any(
        d.covers(ctx.contract.id) and _in_effect(d.requested_at, ctx.now)
        for d in ctx.state.discontinuances
    )
    if not stopped:
        return _skip("R11")
    if ctx.basis in DISCONTINUANCE_EXEMPT:  # Art. 27(1)(i)-(iv) apply whatever the person wants
        return _check("R11", ["discontinuance_exempt"])
    return _check("R11", ["discontinued"])


def _r12_pseudonymized(ctx: _Ctx) -> _Check:
    """Rule 12, APPI Art. 41(6), 42(1)-(2): no provision even with consent, except under laws
    and regulations or the Art. 27(5) cases (`gateway.contracts.PSEUDONYMIZED_BASES`)."""
    if ctx.purpose is None or ctx.purpose.data_category != DataCategory.PSEUDONYMIZED:
        return _skip("R12")
    banned = ctx.basis not in PSEUDONYMIZED_BASES
    return _check("R12", ["pseudonymized_provision_banned"] if banned else [])


def _r13_minimisation(ctx: _Ctx) -> _Check:
    """Rule 13, GDPR Art. 5(1)(c): only the contract's fields leave; a drop is reported."""
    if ctx.purpose is None:  # unknown_purpose already says why nothing can be sent
        return _skip("R13")
    return _check("R13", ["fields_dropped"] if ctx.fields_dropped else [])


def _context(
    item: ProvisionItem, contract: PartnerContract, state: SubjectState, now: datetime
) -> _Ctx:
    purpose = contract.purposes.get(item.purpose)
    sent, dropped = _minimise(item.fields, purpose)
    today = now.astimezone(JST).date()
    return _Ctx(item, contract, purpose, state, now, today, sent, dropped)


def decide(
    item: ProvisionItem, contract: PartnerContract, state: SubjectState, now: datetime
) -> Decision:
    """Decide one provision of one person's record to `contract`'s partner at `now`.

    Every rule runs, so `reasons` holds every denial found; the decision is allowed only when
    every reason is informational (`INFORMATIONAL_CODES`).

    Raises:
        ValueError: `now` is not timezone-aware.
    """
    if now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    ctx = _context(item, contract, state, now)
    cross_border, r6 = _r6_foreign_recipient(ctx)
    checks = (
        _r1_default_deny(ctx),
        _r2_consent(ctx),
        _r3_exception(ctx),
        _r4_not_third_party(ctx),
        _r5_opt_out(ctx),
        r6,
        _r9_personally_referable(ctx),
        _r11_discontinuance(ctx),
        _r12_pseudonymized(ctx),
        _r13_minimisation(ctx),
    )
    return _decision(ctx, cross_border, checks)


def _decision(
    ctx: _Ctx, cross_border: CrossBorderBasis | None, checks: tuple[_Check, ...]
) -> Decision:
    reasons = tuple(r for c in checks for r in c.reasons)
    allowed = all(r.code in INFORMATIONAL_CODES for r in reasons)  # unknown codes deny
    if not allowed:  # "this legal exception overrides" the stop: not when nothing is provided
        reasons = tuple(r for r in reasons if r.code != "discontinuance_exempt")
    return Decision(
        subject_id=ctx.item.subject_id,
        partner_id=ctx.contract.id,
        purpose=ctx.item.purpose,
        allowed=allowed,
        legal_basis=ctx.item.legal_basis,
        cross_border_basis=cross_border,
        data_category=ctx.purpose.data_category if ctx.purpose is not None else None,
        reasons=reasons,
        rule_ids=tuple(dict.fromkeys(c.rule for c in checks if c.applied)),
        fields_sent=ctx.fields_sent if allowed else (),
        fields_dropped=ctx.fields_dropped,
        evidence={k: v for c in checks for k, v in c.evidence.items()},
    )
