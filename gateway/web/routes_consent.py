"""Consent registry endpoints (role admin; compliance reads): APPI Art. 27(1) and Art. 35."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict

from gateway.consent import (
    SUBJECT_ID_PATTERN,
    DiscontinuanceBody,
    GrantBody,
    discontinuance,
    grant_event,
    withdraw_event,
)
from gateway.consent_import import ImportResult, import_consents
from gateway.errors import FieldError, NotFound, ValidationFailed
from gateway.models import ConsentAction, ConsentEvent, Discontinuance, Role
from gateway.web.endpoints import Caller, Endpoint, QueryParam
from gateway.web.problems import model_response, read_model, require_media, require_utf8
from gateway.web.services import DELIVERY, SERVICES

IMPORT_MEDIA = ("application/x-ndjson", "application/jsonl", "text/csv")


class SubjectConsents(BaseModel):
    model_config = ConfigDict(frozen=True)

    subject_id: str
    current: dict[str, ConsentEvent]
    history: list[ConsentEvent]
    discontinuances: list[Discontinuance]


def subject_id_of(request: web.Request) -> str:
    """The `{subject_id}` path value. Raises ValidationFailed if it is not a member id."""
    subject_id = request.match_info["subject_id"]
    if not SUBJECT_ID_PATTERN.fullmatch(subject_id):
        raise ValidationFailed(
            "subject_id must be 1-128 characters: letters, digits and . _ : @ -",
            errors=[FieldError("/subject_id", "not a valid subject id")],
        )
    return subject_id


def purpose_of(request: web.Request) -> str:
    """The `{purpose}` path value. Raises NotFound when no contract declares it."""
    purpose = request.match_info["purpose"]
    known = request.app[SERVICES].known_purposes
    if purpose not in known:
        raise NotFound(f"unknown purpose; the contracts declare: {', '.join(sorted(known))}")
    return purpose


# An event's `seq` is the store's (GET .../consents shows it); the answer to a write leaves it
# out rather than show null.
_NUMBERED_BY_THE_STORE: Final = {"seq"}


async def put_consent(request: web.Request, caller: Caller) -> web.StreamResponse:
    services = request.app[SERVICES]
    subject_id, purpose = subject_id_of(request), purpose_of(request)
    body = await read_model(request, GrantBody)
    event = grant_event(subject_id, purpose, body, now=services.clock(), recorded_by=caller.actor)
    await services.store.append_consent_events([event])
    return model_response(event, status=201, exclude=_NUMBERED_BY_THE_STORE)


async def delete_consent(request: web.Request, caller: Caller) -> web.StreamResponse:
    services = request.app[SERVICES]
    subject_id, purpose = subject_id_of(request), purpose_of(request)
    event = withdraw_event(
        subject_id, purpose, withdrawn_at=None, now=services.clock(), recorded_by=caller.actor
    )
    await services.store.append_consent_events([event])
    await _remove_from_partners(request, [subject_id], purpose=purpose, partners=None)
    return model_response(event, exclude=_NUMBERED_BY_THE_STORE)


async def _remove_from_partners(
    request: web.Request,
    subject_ids: Sequence[str],
    *,
    purpose: str | None,
    partners: frozenset[str] | None,
) -> None:
    """APPI Art. 35: partners holding the people are asked to remove them (queued, logged),
    in one append and as few requests as the partner takes (gateway.provisions.removal)."""
    why = "consent_withdrawn" if purpose is not None else "discontinuance"
    whys = dict.fromkeys(subject_ids, why)
    if await request.app[SERVICES].removals.remove_each(whys, purpose=purpose, partners=partners):
        request.app[DELIVERY].wake()


async def get_consents(request: web.Request, caller: Caller) -> web.StreamResponse:
    store = request.app[SERVICES].store
    subject_id = subject_id_of(request)
    states = await store.subject_states([subject_id])
    state = states[subject_id]
    history = await store.consent_history(subject_id)
    return model_response(
        SubjectConsents(
            subject_id=subject_id,
            current=dict(state.consents),
            history=history,
            discontinuances=list(state.discontinuances),
        )
    )


async def post_discontinuance(request: web.Request, caller: Caller) -> web.StreamResponse:
    services = request.app[SERVICES]
    subject_id = subject_id_of(request)
    body = await read_model(request, DiscontinuanceBody)
    if body.partners != "all":
        unknown = [
            FieldError(f"/partners/{i}", "unknown partner: no contract has this id")
            for i, p in enumerate(body.partners)
            if p not in services.contracts
        ]
        if unknown:
            raise ValidationFailed("the request names unknown partners", errors=unknown)
    item = discontinuance(subject_id, body, now=services.clock(), recorded_by=caller.actor)
    saved = await services.store.append_discontinuance(item)
    partners = None if saved.partners is None else frozenset(saved.partners)
    await _remove_from_partners(request, [subject_id], purpose=None, partners=partners)
    return model_response(saved, status=201)


def import_format(request: web.Request) -> Literal["jsonl", "csv"]:
    """`?format=` if given, else from the Content-Type. Raises ValidationFailed or
    UnsupportedMediaType."""
    explicit = request.query.get("format")
    if explicit is None:
        return "csv" if require_media(request, IMPORT_MEDIA) == "text/csv" else "jsonl"
    require_utf8(request)  # any media type with ?format= (curl's default form type, say)
    if explicit == "csv":
        return "csv"
    if explicit == "jsonl":
        return "jsonl"
    raise ValidationFailed(
        "format must be jsonl or csv", errors=[FieldError.query("format", "jsonl or csv")]
    )


async def post_import(request: web.Request, caller: Caller) -> web.StreamResponse:
    services = request.app[SERVICES]
    fmt = import_format(request)

    async def withdrawn(pairs: list[tuple[str, str]]) -> None:
        """A stored batch's withdrawals that are the person's current state: one dated
        before a later grant changes nothing, so nothing is removed for it."""
        states = await services.store.subject_states(sorted({s for s, _ in pairs}))
        by_purpose: dict[str, list[str]] = {}
        for subject_id, purpose in pairs:
            current = states[subject_id].consents.get(purpose)
            if current is not None and current.action is ConsentAction.WITHDRAW:
                by_purpose.setdefault(purpose, []).append(subject_id)
        for purpose, subject_ids in by_purpose.items():  # a batch's removals together
            unique = list(dict.fromkeys(subject_ids))
            await _remove_from_partners(request, unique, purpose=purpose, partners=None)

    result = await import_consents(
        request.content.iter_chunked(1 << 16),
        fmt=fmt,
        store=services.store,
        known_purposes=services.known_purposes,
        recorded_by=f"import:{caller.actor}",
        now=services.clock(),
        on_withdrawn=withdrawn,
        pause=services.priority.pause,  # bulk work: a fraud check goes first
    )
    return model_response(result)


_SUBJECT_PATH = "/v1/subjects/{subject_id}"
_CONSENT_PATH = _SUBJECT_PATH + "/consents/{purpose}"
_EXAMPLE = {"subject_id": "member-000123", "purpose": "ad_customer_match"}
_GRANT_EXAMPLE = {
    "notice_version": "privacy-notice-2026-04",
    "obtained_at": "2026-04-01T09:30:00+09:00",
    "channel": "web",
    "foreign_disclosure_version": "foreign-us-2025-04",
}
ADMIN = frozenset({Role.ADMIN})

ENDPOINTS = [
    Endpoint(
        method="PUT",
        path=_CONSENT_PATH,
        handler=put_consent,
        tag="consents",
        summary="Grant consent for one purpose, with its evidence (APPI Art. 27(1))",
        description="Appends a grant to the subject's consent history; nothing is overwritten. "
        "`foreign_disclosure_version` records the Art. 28(2) disclosure the person was shown.",
        roles=ADMIN,
        request_model=GrantBody,
        response_model=ConsentEvent,
        response_status=201,
        example_path=_EXAMPLE,
        example_body=_GRANT_EXAMPLE,
    ),
    Endpoint(
        method="DELETE",
        path=_CONSENT_PATH,
        handler=delete_consent,
        tag="consents",
        summary="Withdraw consent for one purpose",
        description="Appends a withdrawal, effective for every later decision.",
        roles=ADMIN,
        response_model=ConsentEvent,
        example_path=_EXAMPLE,
    ),
    Endpoint(
        method="GET",
        path=_SUBJECT_PATH + "/consents",
        handler=get_consents,
        tag="consents",
        summary="A subject's current consents, full history and discontinuance requests",
        roles=frozenset({Role.ADMIN, Role.COMPLIANCE}),
        response_model=SubjectConsents,
        example_path=_EXAMPLE,
    ),
    Endpoint(
        method="POST",
        path=_SUBJECT_PATH + "/discontinuance",
        handler=post_discontinuance,
        tag="consents",
        summary="Record a request to stop third-party provision (APPI Art. 35)",
        description="Effective for every later decision, for all partners or the named ones.",
        roles=ADMIN,
        request_model=DiscontinuanceBody,
        response_model=Discontinuance,
        response_status=201,
        example_path=_EXAMPLE,
        example_body={"partners": "all", "reason": "request received at the service desk"},
    ),
    Endpoint(
        method="POST",
        path="/v1/consents/import",
        handler=post_import,
        tag="consents",
        summary="Stream grants and withdrawals as JSONL or CSV",
        description="One grant or withdrawal per line (CSV: a header row). Answers counts and "
        "the rejected lines with reasons (the first 1,000; `rejected` counts them all). The "
        "body is streamed: it has no size limit and memory does not grow with it. Lines are "
        "committed in batches as they arrive: a failed import can be re-sent whole, which leaves "
        "every current state as it was and appends the lines to the history again.",
        roles=ADMIN,
        request_media=IMPORT_MEDIA,
        response_model=ImportResult,
        query=(QueryParam("format", "jsonl or csv; default from Content-Type"),),
        example_media="application/x-ndjson",
        example_body=(
            '{"subject_id": "member-000123", "purpose": "ad_customer_match", "action": "grant", '
            '"obtained_at": "2026-04-01T09:30:00+09:00", '
            '"notice_version": "privacy-notice-2026-04", "channel": "web"}\n'
        ),
    ),
]
