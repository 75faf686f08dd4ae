"""What a Customer Match record is: its fields, and the check of a record's shape before it
is decided (gateway.provisions.customer_match)."""

from __future__ import annotations

from typing import Final

from gateway.delivery.outbox import Rejection
from gateway.provisions.reader import subject_record

__all__ = ["RECORD_FIELDS", "checked_record"]

# A record's fields (besides subject_id). *_sha256: the caller hashed them already.
RECORD_FIELDS: Final = (
    "email",
    "phone",
    "given_name",
    "family_name",
    "region_code",
    "postal_code",
    "email_sha256",
    "phone_sha256",
)
_RECORD_FIELDS: Final = frozenset(RECORD_FIELDS)
_UNKNOWN_FIELD: Final = (
    "a field that is not part of a customer-match record (not named here: a key may itself be "
    f"personal data); the fields are: {', '.join(RECORD_FIELDS)}"
)


def checked_record(line: int, raw: object, rejections: list[Rejection]) -> dict[str, str] | None:
    """The record if it has the shape of one; else None, with the rejection noted."""

    def reject(code: str, field: str | None, message: str) -> None:
        rejections.append(Rejection(line, subject, code, field, message))

    found = subject_record(line, raw, rejections)
    if found is None:
        return None
    subject, fields = found
    record: dict[str, str] = {"subject_id": subject}
    for name, value in fields.items():
        if name == "subject_id":
            continue
        if name not in _RECORD_FIELDS:  # even when empty: the caller meant something by it
            # Not named: an unknown key is the caller's own text (an email, a name, say).
            reject("unknown_field", None, _UNKNOWN_FIELD)
            return None
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            reject("invalid_type", name, "must be a string")
            return None
        record[name] = value
    return record
