"""Consent registry: grants, withdrawals and discontinuances (APPI Art. 27(1), Art. 35).

The builders are pure (time comes in as `now`). The streamed bulk import is
`gateway.consent_import`, which accepts exactly what these builders accept.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Final, Literal

from pydantic import AfterValidator, BeforeValidator, StringConstraints, field_validator

from gateway.errors import FieldError, ValidationFailed
from gateway.models import ConsentAction, ConsentEvent, Discontinuance, Frozen

# The web layer's member-id rule: an imported id must be one the API can later look up.
SUBJECT_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


def parse_timestamp(value: str) -> datetime:
    """An ISO 8601 timestamp that carries a UTC offset. Raises ValueError saying what is wrong
    (never quoting the value)."""
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("not an ISO 8601 timestamp") from None
    if at.utcoffset() is None:
        raise ValueError("has no UTC offset (add Z or +09:00)")
    return _plausible(at)


# No consent or withdrawal the gateway records happened before this (APPI took effect in
# 2005): an earlier time is a typing mistake, and one near year 1 cannot even be stored in UTC.
EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)


def _plausible(at: datetime) -> datetime:
    """`at` (aware) unless it is before EARLIEST. Raises ValueError. Compared in local time
    against EARLIEST moved by the offset: `at` itself may not survive a move to UTC."""
    offset = at.utcoffset()
    assert offset is not None, "checked by the caller"
    if at.replace(tzinfo=None) < EARLIEST.replace(tzinfo=None) + offset:
        raise ValueError("is before 2000-01-01: not a plausible date")
    return at


def _timestamp_input(value: object) -> datetime:
    # Strings go through the same parser as the import, so both accept the same spellings.
    if isinstance(value, str):
        return parse_timestamp(value)
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValueError("has no UTC offset")
        return _plausible(value)
    raise ValueError("must be an ISO 8601 timestamp string")


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


# Evidence and reasons are labels and short sentences (a notice version, a channel, why a person
# asked to stop), not documents: the same bound for the API and the bulk import.
MAX_TEXT: Final = 500
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT), AfterValidator(_not_blank)]
Timestamp = Annotated[datetime, BeforeValidator(_timestamp_input)]


class GrantBody(Frozen):
    """The evidence of a consent (rule 2): notice shown, when, through which channel, and for a
    foreign recipient the Art. 28(2) disclosure version."""

    notice_version: Text
    obtained_at: Timestamp
    channel: Text
    foreign_disclosure_version: Text | None = None


class DiscontinuanceBody(Frozen):
    """A request to stop third-party provision (Art. 35): to every partner or the named ones."""

    partners: list[Text] | Literal["all"]
    reason: Text

    @field_validator("partners")
    @classmethod
    def _names_someone(cls, value: list[str] | Literal["all"]) -> list[str] | Literal["all"]:
        if value != "all" and not value:
            raise ValueError('name at least one partner, or "all"')
        return value


def aware_now(now: datetime) -> datetime:
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")  # a caller's bug, not the request's
    return now.astimezone(UTC)


def _not_after(at: datetime, now: datetime, pointer: str) -> None:
    if at > now:
        raise ValidationFailed(
            f"{pointer[1:]} is in the future",
            errors=[FieldError(pointer, "must not be later than the time of the request")],
        )


def grant_event(
    subject_id: str, purpose: str, body: GrantBody, *, now: datetime, recorded_by: str
) -> ConsentEvent:
    """The grant, effective when consent was obtained. Raises ValidationFailed (/obtained_at)
    when that is after `now`; ValueError if `now` is naive."""
    now = aware_now(now)
    _not_after(body.obtained_at, now, "/obtained_at")
    return ConsentEvent(
        subject_id=subject_id,
        purpose=purpose,
        action=ConsentAction.GRANT,
        effective_at=body.obtained_at.astimezone(UTC),
        notice_version=body.notice_version,
        channel=body.channel,
        foreign_disclosure_version=body.foreign_disclosure_version,
        recorded_at=now,
        recorded_by=recorded_by,
    )


def withdraw_event(
    subject_id: str,
    purpose: str,
    *,
    withdrawn_at: datetime | None,
    now: datetime,
    recorded_by: str,
) -> ConsentEvent:
    """The withdrawal, effective at `withdrawn_at` (default: now). Raises ValidationFailed
    (/withdrawn_at) when that is naive or after `now`; ValueError if `now` is naive."""
    now = aware_now(now)
    at = now if withdrawn_at is None else withdrawn_at
    if at.utcoffset() is None:
        raise ValidationFailed(
            "withdrawn_at has no UTC offset",
            errors=[FieldError("/withdrawn_at", "must carry a UTC offset")],
        )
    _not_after(at, now, "/withdrawn_at")
    return ConsentEvent(
        subject_id=subject_id,
        purpose=purpose,
        action=ConsentAction.WITHDRAW,
        effective_at=at.astimezone(UTC),
        recorded_at=now,
        recorded_by=recorded_by,
    )


def discontinuance(
    subject_id: str, body: DiscontinuanceBody, *, now: datetime, recorded_by: str
) -> Discontinuance:
    """The request, effective now, for every partner ("all") or the named ones (deduplicated).
    Raises ValueError if `now` is naive."""
    now = aware_now(now)
    partners = None if body.partners == "all" else tuple(dict.fromkeys(body.partners))
    return Discontinuance(
        subject_id=subject_id,
        partners=partners,
        reason=body.reason,
        requested_at=now,
        recorded_by=recorded_by,
    )


# --- streamed import ------------------------------------------------------------------------
