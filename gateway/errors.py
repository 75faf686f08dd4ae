"""The gateway's one exception tree and its RFC 9457 problem mapping.

    GatewayError                      problem type slug, HTTP status
    ├── ConfigError                   bad settings or keyring (the service does not start)
    │   └── ContractError             a partner contract file is invalid (names file and field)
    ├── StorageError                  the database failed (asyncpg / sqlite3 errors, translated)
    ├── identifiers.UnknownKind       a caller asked to normalize a field kind the profile lacks
    └── ProblemError                  an error answered to an API caller
        ├── BadRequest                400 malformed body, wrong media type
        ├── ValidationFailed          422 a field is wrong (names it with a JSON pointer)
        ├── Unauthorized              401 no or unknown API key
        ├── Forbidden                 403 wrong role or partner
        ├── NotFound                  404 unknown resource, partner or purpose
        ├── Conflict                  409 state conflict (e.g. idempotency key reused)
        ├── PayloadTooLarge           413 body over the limit
        └── UnsupportedMediaType      415

Problem `type`s are `tag:` URIs (RFC 4151), which RFC 9457 §3.1.1 suggests for identifiers that
are not meant to be dereferenced; each class below names its slug, and the OpenAPI document
declares the problem statuses of every endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

PROBLEM_TYPE_PREFIX = "tag:gateway.example.com,2026:problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_type(slug: str) -> str:
    return PROBLEM_TYPE_PREFIX + slug


# A key, header cell or query parameter the caller sent may be anything they had to hand,
# an email or a name: a message repeats it only when it is shaped like this API's names.
_NAME_LIKE = re.compile(r"[a-z][a-z0-9_]{0,63}")


def name_like(name: str) -> bool:
    """Whether `name` is shaped like this API's field and parameter names."""
    return _NAME_LIKE.fullmatch(name) is not None


def shown_name(name: str) -> str:
    """`name` quoted for a message if it is name_like; else a phrase saying it is not shown."""
    return repr(name) if name_like(name) else "(not shown: not a field name)"


@dataclass(frozen=True)
class FieldError:
    """One wrong field, as in RFC 9457 §3's `errors` example: a JSON pointer (RFC 6901) into the
    body, or for a query parameter its name."""

    pointer: str
    detail: str
    parameter: str | None = None

    @classmethod
    def query(cls, name: str, detail: str) -> FieldError:
        return cls("", detail, parameter=name)

    def as_json(self) -> dict[str, str]:
        where = {"parameter": self.parameter} if self.parameter else {"pointer": self.pointer}
        return {**where, "detail": self.detail}


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """Settings, keyring or contracts are unusable; the service refuses to start."""


class ContractError(ConfigError):
    """A partner contract is invalid. `path` is the file, `field` the dotted field name."""

    def __init__(self, path: str, field: str, message: str) -> None:
        super().__init__(f"{path}: {field}: {message}")
        self.path = path
        self.field = field
        self.message = message


class StorageError(GatewayError):
    """The database failed; raised `from` the driver's exception."""


class ProblemError(GatewayError):
    """An error answered to a caller as `application/problem+json` (RFC 9457)."""

    status: ClassVar[int] = 400
    slug: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(
        self,
        detail: str,
        *,
        errors: Sequence[FieldError] = (),
        extra: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = tuple(errors)
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def body(self, instance: str | None = None) -> dict[str, Any]:
        """The problem details object (RFC 9457 §3)."""
        out: dict[str, Any] = {
            "type": problem_type(self.slug),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            out["instance"] = instance
        if self.errors:
            out["errors"] = [e.as_json() for e in self.errors]
        out.update(self.extra)
        return out


class BadRequest(ProblemError):
    status = 400
    slug = "bad-request"
    title = "The request could not be read"


class ValidationFailed(ProblemError):
    status = 422
    slug = "validation-error"
    title = "The request has invalid fields"


class Unauthorized(ProblemError):
    status = 401
    slug = "unauthorized"
    title = "A valid API key is required"


class Forbidden(ProblemError):
    status = 403
    slug = "forbidden"
    title = "This client may not do that"


class NotFound(ProblemError):
    status = 404
    slug = "not-found"
    title = "No such resource"


class Conflict(ProblemError):
    status = 409
    slug = "conflict"
    title = "The request conflicts with the current state"


class PayloadTooLarge(ProblemError):
    status = 413
    slug = "payload-too-large"
    title = "The request body is too large"


class UnsupportedMediaType(ProblemError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


def internal_problem(instance: str | None = None) -> dict[str, Any]:
    """The body for an unexpected failure: nothing about the failure leaks to the caller."""
    body: dict[str, Any] = {
        "type": problem_type("internal-error"),
        "title": "Internal error",
        "status": 500,
        "detail": "The gateway failed to process the request; it has been logged.",
    }
    if instance is not None:
        body["instance"] = instance
    return body


PROBLEM_CLASSES: tuple[type[ProblemError], ...] = (
    BadRequest,
    ValidationFailed,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
)
