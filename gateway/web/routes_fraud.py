"""Fraud checks (role fraud): `POST /v1/fraud-checks`, synchronous, inside a checkout's budget.

The checks run over their own HTTP client session (`fraud_running`, a cleanup context of the
app), apart from the delivery worker's, so a bulk upload never queues a checkout behind it. Its
pool has no limit of its own: a check waiting there for a connection would spend its budget
unseen. What bounds the connections is FraudChecks' limit of checks in flight per partner
(IN_FLIGHT_PER_PARTNER), which answers a check beyond it at once (gateway_busy).

Order fields that leave in clear are validated for what they are, so nothing else (an email,
a phone number) can leave in their place unhashed: `ip_address` must be an IP address and is
sent in its canonical form, `shipping_postal_code` must look like a postal code.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Final

import aiohttp
from aiohttp import web
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from gateway.consent import SUBJECT_ID_PATTERN
from gateway.contract_kinds import FraudDecision
from gateway.delivery.transport import AiohttpTransport
from gateway.models import Role
from gateway.provisions.fraud import FraudChecks
from gateway.web.endpoints import Caller, Endpoint
from gateway.web.problems import json_response, read_model
from gateway.web.services import SERVICES

FRAUD_TEAM: Final = frozenset({Role.FRAUD})
IN_FLIGHT_PER_PARTNER: Final = 100  # checks out at once to one fraud provider (connections)
EXTRA_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")
# A postal code as written anywhere we ship to: 1-10 letters, digits, spaces and hyphens, not
# starting or ending with a space or hyphen (JP 100-0001, US 12345-6789, UK SW1A 1AA, CA K1A
# 0B1, NL 1234 AB). No @ or dot, so never an email; 1-9 digits, so never a name nor a phone
# number of 10 digits or more (JP 03-1234-5678, 09012345678; NANP 555-123-4567).
POSTAL_CODE: Final = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9 -]{0,8}[A-Za-z0-9])?")
POSTAL_CODE_DIGITS: Final = range(1, 10)

# The validators raise PydanticCustomError, not ValueError: pydantic prefixes a ValueError's
# message with "Value error, ", which tells the caller nothing.


def _number(value: object) -> object:
    # JSON true/false and numeric strings are not amounts (pydantic would coerce them). NaN
    # and ±Infinity, which the JSON parser lets through, get the same message whatever the
    # sign (pydantic's own check would call -Infinity and NaN "less than 0").
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("number_type", "must be a JSON number")
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "Input should be a finite number")
    return value


def _ip_address(value: str) -> str:
    """The address in its canonical form (RFC 5952 for IPv6: lower case, zeros compressed;
    an IPv4-mapped IPv6 address as the IPv4 address), so one client has one spelling at the
    provider. "" passes (absent). A zone ("fe80::1%eth0") is refused: it is free text."""
    if value == "":
        return value
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise PydanticCustomError("ip_address", "must be an IPv4 or IPv6 address") from None
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id is not None:
            raise PydanticCustomError("ip_address", "must be an IP address without a zone (%)")
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
    return str(address)


def _postal_code(value: str) -> str:
    """A plausible postal code (POSTAL_CODE, POSTAL_CODE_DIGITS). "" passes (absent)."""
    digits = sum(c.isdigit() for c in value)
    if value and (POSTAL_CODE.fullmatch(value) is None or digits not in POSTAL_CODE_DIGITS):
        raise PydanticCustomError(
            "postal_code",
            "must be a postal code: 1-10 letters, digits, spaces or hyphens, 1-9 of them digits",
        )
    return value


class FraudOrder(BaseModel):
    """The order to check. Fields the contract does not list are accepted, dropped (never
    sent) and named in the answer's `fields_dropped` (requirements rule 13)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    order_id: str = Field(min_length=1, max_length=128)
    amount: Annotated[int | float, BeforeValidator(_number), Field(ge=0, allow_inf_nan=False)]
    currency: str = Field(
        pattern=r"^[A-Z]{3}$",
        description="three capital letters, e.g. JPY: an ISO 4217 code's shape (ISO's list "
        "is not checked; docs/fraud-checks.md says why)",
    )
    card_bin: str | None = Field(default=None, pattern=r"^[0-9]{6,8}$")
    ip_address: Annotated[str, Field(max_length=45), AfterValidator(_ip_address)] | None = None
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)
    shipping_postal_code: Annotated[str, AfterValidator(_postal_code)] | None = None

    @model_validator(mode="after")
    def _plain_names(self) -> FraudOrder:
        # An unknown field's name is recorded in the log (fields_dropped): it must be a name,
        # never something that could be a person's value (an email used as a key).
        if any(EXTRA_NAME.fullmatch(k) is None for k in self.__pydantic_extra__ or {}):
            raise PydanticCustomError(
                "field_name", "other field names must be letters, digits and _ (max 63)"
            )
        return self


class FraudCheckBody(BaseModel):
    """`POST /v1/fraud-checks`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    partner: str = Field(min_length=1, max_length=63)
    subject_id: str = Field(pattern=f"^{SUBJECT_ID_PATTERN.pattern}$")
    order: FraudOrder


class FraudCheckAnswer(BaseModel):
    """The answer's shape, for the API description (the hot path builds a plain dict)."""

    model_config = ConfigDict(frozen=True)

    check_id: str = Field(description="ours; the provider's Idempotency-Key")
    transfer_id: str = Field(description="the log's transfer id (= check_id)")
    decision: FraudDecision
    score: float | None = Field(description="0..1; null for a fallback")
    reasons: list[str] = Field(description="the provider's codes, or why this is a fallback")
    provider_ref: str | None = Field(description="the provider's reference; null for a fallback")
    fallback: bool = Field(description="true: the contract's fallback, not the provider's verdict")
    fields_dropped: list[str] = Field(description="order fields not sent (not in the contract)")


FRAUD_CHECKS: web.AppKey[FraudChecks] = web.AppKey("fraud_checks", FraudChecks)


async def fraud_running(app: web.Application) -> AsyncIterator[None]:
    """The fraud checks live as long as the app, over one client session of their own.
    Registered after the log's context, so it stops first and no check outlives the log."""
    services = app[SERVICES]
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None),  # each call gets its own budget
        # No pool limit: IN_FLIGHT_PER_PARTNER bounds the connections (module docstring).
        connector=aiohttp.TCPConnector(limit=0),
    ) as session:
        app[FRAUD_CHECKS] = FraudChecks(
            contracts=services.contracts,
            store=services.store,
            transport=AiohttpTransport(session),
            ledger=services.ledger,
            subject_key=services.subject_key,
            # An hmac field is the keyed pseudonym under the pseudonymization key, the same
            # HMAC-SHA256 the log uses for subject ids (models.Transform.HMAC).
            hmac=services.subject_key,
            credential=services.credential,
            clock=services.clock,
            monotonic=time.monotonic,
            new_id=services.new_id,
            default_region=services.settings.default_region,
            max_in_flight=IN_FLIGHT_PER_PARTNER,
        )
        yield


async def post_fraud_check(request: web.Request, caller: Caller) -> web.StreamResponse:
    started = time.monotonic()  # the provider's budget counts from here
    with request.app[SERVICES].priority.urgent():  # an upload's work waits (cooperative.py)
        body = await read_model(request, FraudCheckBody)
        order = {k: v for k, v in body.order if v is not None and v != ""}  # null, "": absent
        checks = request.app[FRAUD_CHECKS]
        answer = await checks.check(body.partner, body.subject_id, order, started=started)
        return json_response(answer)


ENDPOINTS = [
    Endpoint(
        method="POST",
        path="/v1/fraud-checks",
        handler=post_fraud_check,
        summary="Check an order with the fraud provider (synchronous; normalized verdict)",
        description=(
            "Sends the order to the partner's fraud provider under the contract's "
            "fraud_detection purpose (its legal basis, rationale and approver) and answers "
            "the provider's verdict normalized: decision accept, review or deny, score 0-1, "
            "the provider's reason codes and reference. Only the fields the contract lists "
            "leave, hashed or keyed as it says; other order fields are dropped and named in "
            "fields_dropped. The provider call has the contract's time budget (timeout_ms, "
            "default 800 ms, counted from the request's arrival) with at most one retry "
            "inside it, the check_id as its Idempotency-Key, and a circuit breaker per "
            "partner. Whenever the provider's verdict cannot be had (gateway busy, circuit "
            "open, timeout, unreachable, error, redirect, malformed answer) the answer is "
            "still 200: the contract's declared fallback (review by default) with fallback "
            "true, score and provider_ref null and a reason code. A check the policy refuses "
            "(e.g. the person asked to stop provision to this partner, Art. 35) sends nothing "
            "and is answered the same "
            "way, its reasons being the policy's codes: a checkout never waits on an error. "
            "The provision (Art. 29) and the verdict as a receipt (Art. 30) are recorded in "
            "the transfer log under transfer_id (= check_id) before the answer."
        ),
        tag="fraud",
        roles=FRAUD_TEAM,
        errors=frozenset({404}),  # an unknown partner
        partner_scoped=False,  # fraud clients are not partner-listed (require_partner: senders)
        request_model=FraudCheckBody,
        response_model=FraudCheckAnswer,
        example_body={
            "partner": "sample-fraud-provider",
            "subject_id": "cust-000123",
            "order": {
                "order_id": "o-2026-000042",
                "amount": 12800,
                "currency": "JPY",
                "card_bin": "411111",
                "ip_address": "203.0.113.7",
                "email": "Dana.M@example.com",
                "phone": "090-1234-5678",
                "shipping_postal_code": "100-0001",
            },
        },
    ),
]
