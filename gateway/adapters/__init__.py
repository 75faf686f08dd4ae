"""Partner adapters: one pure module per provision kind, encode and decode only.

    customer_match     Google Data Manager API v1 audienceMembers:ingest / :remove bodies
    fraud_check        our fraud provider's POST /v1/scores request and its verdict
    attribute_export   the recipient's designated CSV file, and the summary it returns

No I/O, no clock, no randomness: ids and time are passed in; the transport sends the bytes.
Wire formats and contract keys: docs/adapters.md. The errors, all under GatewayError:

    AdapterError
    ├── InvalidMember          a Customer Match member is not normalized and hashed as sent
    ├── InvalidBatch           an upload batch is empty or larger than the API allows
    ├── InvalidOrderField      a fraud-check order field cannot be sent as the contract says
    ├── ProviderResponseError  the fraud provider's answer is not a usable verdict
    ├── UnencodableValue       an export value has no exact form in the file's encoding
    └── SummaryRefused         a returned summary is not a safe statistical summary

No message ever holds a person's value: only field or column names, codes and JSON pointers.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.errors import GatewayError

__all__ = [
    "AdapterError",
    "InvalidBatch",
    "InvalidMember",
    "InvalidOrderField",
    "ProviderResponseError",
    "SummaryRefused",
    "UnencodableValue",
]


class AdapterError(GatewayError):
    """An adapter cannot encode what it was given, or decode what came back."""


class InvalidMember(AdapterError):
    """A member's `field` is not in the form the upload needs (the caller normalizes first)."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail


class InvalidBatch(AdapterError):
    """A batch the Data Manager API would refuse as a whole (empty, or too many members)."""


class InvalidOrderField(AdapterError):
    """An order `field` that cannot be sent: `code` is a stable reason (an identifier
    `Reason` for a rejected email or phone, else e.g. "not_a_string")."""

    def __init__(self, field: str, code: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.code = code
        self.detail = detail


class ProviderResponseError(AdapterError):
    """The provider answered something that is not a verdict. `status` is the HTTP status;
    `retryable` says whether the same request may be sent again."""

    def __init__(self, detail: str, *, status: int, retryable: bool = False) -> None:
        super().__init__(f"provider answer unusable (HTTP {status}): {detail}")
        self.detail = detail
        self.status = status
        self.retryable = retryable


class UnencodableValue(AdapterError):
    """A value of `column` has no exact representation in `encoding`: reject that record.
    The value itself is never carried (it is a person's data)."""

    def __init__(self, column: str, encoding: str) -> None:
        super().__init__(f"{column}: a value cannot be written exactly in {encoding}")
        self.column = column
        self.encoding = encoding


class SummaryRefused(AdapterError):
    """A returned summary that may single out persons. `problems` are (JSON pointer, detail),
    RFC 6901 pointers into the body, ready for RFC 9457 `errors`."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        first = f"{self.problems[0][0] or '/'}: {self.problems[0][1]}" if self.problems else ""
        super().__init__(f"summary refused, {len(self.problems)} problem(s); first {first}")
