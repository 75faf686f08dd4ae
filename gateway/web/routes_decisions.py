"""Decision preview (roles sender, compliance, admin): what the policy engine would decide,
record by record, without sending or recording anything."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway.contracts import PartnerContract
from gateway.errors import FieldError, ValidationFailed
from gateway.models import LegalBasis, Role
from gateway.policy import Decision, ProvisionItem, decide
from gateway.web.auth import require_partner
from gateway.web.endpoints import Caller, Endpoint
from gateway.web.problems import model_response, read_model
from gateway.web.services import SERVICES, Services

MAX_PREVIEW_RECORDS = 10_000
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
Scalar = str | int | float | bool | None


class PreviewRequest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    partner: str
    purpose: str
    legal_basis: LegalBasis
    records: list[dict[str, Scalar]] = Field(min_length=1, max_length=MAX_PREVIEW_RECORDS)
    rationale: str | None = Field(None, description="Art. 27(1)(ii)-(iv): written rationale")
    approver: str | None = Field(None, description="Art. 27(1)(ii)-(iv): the named approver")
    pri_confirmation: str | None = Field(
        None, description="Art. 31: the recipient's confirmation that the person consented"
    )


class PreviewResponse(BaseModel):
    decisions: list[Decision]


def contract_for(services: Services, partner: str, purpose: str) -> PartnerContract:
    """The partner's contract if it declares the purpose. Raises ValidationFailed."""
    contract = services.contracts.get(partner)
    if contract is None:
        raise ValidationFailed(
            "unknown partner: no contract has this id",
            errors=[
                FieldError("/partner", f"known partners: {', '.join(sorted(services.contracts))}")
            ],
        )
    if purpose not in contract.purposes:
        raise ValidationFailed(
            "the partner's contract does not list this purpose",
            errors=[
                FieldError("/purpose", f"its purposes: {', '.join(sorted(contract.purposes))}")
            ],
        )
    return contract


def present_fields(record: dict[str, Scalar]) -> tuple[str, ...]:
    """The names of the fields a record actually carries (empty values do not count)."""
    return tuple(
        k for k, v in record.items() if k != "subject_id" and v is not None and str(v).strip()
    )


def items_of(body: PreviewRequest) -> list[ProvisionItem]:
    """One ProvisionItem per record. Raises ValidationFailed naming records without subject_id."""
    errors = [
        FieldError(f"/records/{i}/subject_id", "a non-empty string is required")
        for i, r in enumerate(body.records)
        if not isinstance(r.get("subject_id"), str) or not str(r["subject_id"]).strip()
    ]
    # Field names come back in `fields_dropped` and go into logs: a name that is not a plain
    # identifier (an email pasted as a key, say) is refused, and not echoed.
    errors += [
        FieldError(f"/records/{i}", "field names are lowercase letters, digits and _")
        for i, r in enumerate(body.records)
        if not all(_FIELD_NAME.match(k) for k in r)
    ]
    if errors:
        raise ValidationFailed("some records are not valid", errors=errors[:100])
    return [
        ProvisionItem(
            subject_id=str(r["subject_id"]),
            purpose=body.purpose,
            legal_basis=body.legal_basis,
            fields=present_fields(r),
            rationale=body.rationale,
            approver=body.approver,
            pri_confirmation=body.pri_confirmation,
        )
        for r in body.records
    ]


async def post_preview(request: web.Request, caller: Caller) -> web.StreamResponse:
    services = request.app[SERVICES]
    body = await read_model(request, PreviewRequest)
    require_partner(caller.client, body.partner)
    contract = contract_for(services, body.partner, body.purpose)
    items = items_of(body)
    states = await services.store.subject_states(sorted({i.subject_id for i in items}))
    now = services.clock()
    decisions = [decide(item, contract, states[item.subject_id], now) for item in items]
    return model_response(PreviewResponse(decisions=decisions))


EXAMPLE: dict[str, Any] = {
    "partner": "google-customer-match",
    "purpose": "ad_customer_match",
    "legal_basis": "consent",
    "records": [{"subject_id": "member-000123", "email": "dana@example.com", "nickname": "d"}],
}

ENDPOINTS = [
    Endpoint(
        method="POST",
        path="/v1/decisions/preview",
        handler=post_preview,
        tag="decisions",
        summary="Preview the policy decision for each record; nothing is sent or recorded",
        description="Answers, per record: allowed or not, the legal and cross-border basis, every "
        "reason (stable code and sentence), the rules that fired, and the fields that would be "
        "sent and dropped (data minimisation). A sender may preview only its own partners.",
        roles=frozenset({Role.SENDER, Role.COMPLIANCE, Role.ADMIN}),
        partner_scoped=True,
        request_model=PreviewRequest,
        response_model=PreviewResponse,
        example_body=EXAMPLE,
    ),
]
