"""The contract sections that belong to one provision kind, and the rules that tie them to it.

    [destinations.<id>]   customer_match    where Google's Data Manager API puts the audience
    [fraud]               fraud_check       timeout, fallback verdict, circuit breaker
    [export]              attribute_export  the recipient's designated file format

`gateway.contracts` holds them on `PartnerContract` and calls `kind_problems()` from
`contract_problems()`; the rules here are pure, like the ones there.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, StringConstraints

from gateway.models import Frozen, PartnerKind, Transform

if TYPE_CHECKING:
    from gateway.contracts import PartnerContract

Problem = tuple[str, str]  # (dotted field, message)

# Purpose and field names are keys that consent records and requests refer to: one spelling only.
Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
DestinationId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
# Google account ids are digits only (a Google Ads customer id 123-456-7890 is "1234567890").
AccountId = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,20}$")]
# RFC 6838 §4.2 type/subtype names, no parameters (the charset is added from `encoding`).
_MEDIA_NAME = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
MEDIA_TYPE_PATTERN = rf"^{_MEDIA_NAME}/{_MEDIA_NAME}$"

FRAUD_PURPOSE = "fraud_detection"

# Names a summary's dimension may never take: each keys one person (requirements rule 7's
# identifiers). With the contract's own hashed or keyed fields (`identifier_fields`) and any
# *_sha256 name (`names_one_person`).
PER_PERSON_NAMES = frozenset(
    {"member_id", "subject_id", "subject_key", "email", "phone", "given_name", "family_name"}
)
_IDENTIFYING = frozenset({Transform.SHA256, Transform.HMAC, Transform.PREHASHED})


def identifier_fields(contract: PartnerContract) -> frozenset[str]:
    """The fields that key one person: hashed or keyed in any purpose, and subject_id."""
    keyed = {
        name
        for purpose in contract.purposes.values()
        for name, transform in purpose.fields.items()
        if transform in _IDENTIFYING
    }
    return frozenset({"subject_id", *keyed})


def names_one_person(name: str, identifiers: frozenset[str]) -> bool:
    """Whether `name`, as a summary's dimension, would key one person (`identifiers`: the
    contract's `identifier_fields`)."""
    return name in PER_PERSON_NAMES or name in identifiers or name.endswith("_sha256")


class AccountType(StrEnum):
    """Data Manager API v1 `ProductAccount.accountType` (discovery document), without
    ACCOUNT_TYPE_UNSPECIFIED: an account the API cannot route to is a contract error."""

    GOOGLE_ADS = "GOOGLE_ADS"
    DISPLAY_VIDEO_PARTNER = "DISPLAY_VIDEO_PARTNER"
    DISPLAY_VIDEO_ADVERTISER = "DISPLAY_VIDEO_ADVERTISER"
    DATA_PARTNER = "DATA_PARTNER"
    GOOGLE_ANALYTICS_PROPERTY = "GOOGLE_ANALYTICS_PROPERTY"
    GOOGLE_AD_MANAGER_AUDIENCE_LINK = "GOOGLE_AD_MANAGER_AUDIENCE_LINK"
    FLOODLIGHT_CONFIG = "FLOODLIGHT_CONFIG"
    GOOGLE_AD_MANAGER = "GOOGLE_AD_MANAGER"


class Destination(Frozen):
    """One Data Manager `Destination`: the account and the audience list that receive members."""

    operating_account_type: AccountType  # Destination.operatingAccount.accountType
    operating_account_id: AccountId  # Destination.operatingAccount.accountId
    login_account_type: AccountType | None = None  # Destination.loginAccount (a manager account)
    login_account_id: AccountId | None = None
    product_destination_id: str = Field(min_length=1, pattern=r"^\S+$")  # the user list id
    # The consent purpose whose current grant makes adPersonalization CONSENT_GRANTED; absent,
    # every member is sent with CONSENT_DENIED (requirements rule 14).
    personalization_purpose: Name | None = None


class FraudDecision(StrEnum):
    """The gateway's normalized fraud verdict (requirements: accept / review / deny)."""

    ACCEPT = "accept"
    REVIEW = "review"
    DENY = "deny"


class FraudSettings(Frozen):
    """How a fraud check waits for the provider and what it answers when the provider cannot."""

    # strict: TOML has integers and floats; "800" is a typing mistake, not a timeout.
    timeout_ms: int = Field(default=800, ge=50, le=10_000, strict=True)
    fallback: FraudDecision = FraudDecision.REVIEW
    breaker_failures: int = Field(default=5, ge=1, strict=True)  # consecutive, to open
    # TOML floats include inf and nan: neither is a reset delay.
    breaker_reset_s: float = Field(default=30.0, gt=0, strict=True, allow_inf_nan=False)


class ExportEncoding(StrEnum):
    """Python codec names. Shift_JIS is what Japanese recipients commonly designate; cp932 is
    Microsoft's superset of it (IANA Windows-31J)."""

    UTF_8 = "utf-8"
    SHIFT_JIS = "shift_jis"
    CP932 = "cp932"


class LineEnding(StrEnum):
    CRLF = "crlf"  # RFC 4180 §2 (1)
    LF = "lf"


class ExportFormat(Frozen):
    """The file format an attribute-estimation recipient designates (one CSV row per person)."""

    columns: tuple[Name, ...] = Field(min_length=1)
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    header: bool = Field(default=True, strict=True)
    encoding: ExportEncoding = ExportEncoding.UTF_8
    line_ending: LineEnding = LineEnding.CRLF
    media_type: str = Field(default="text/csv", pattern=MEDIA_TYPE_PATTERN)


# --- semantic rules: pure, called by gateway.contracts.contract_problems


def kind_problems(contract: PartnerContract) -> list[Problem]:
    """What is wrong with the kind-specific sections of a structurally valid contract."""
    return _destination_problems(contract) + _fraud_problems(contract) + _export_problems(contract)


def _dimension_problems(dimensions: tuple[str, ...], contract: PartnerContract) -> list[Problem]:
    """A dimension the contract allows may not key one person, nor be listed twice."""
    identifiers = identifier_fields(contract)
    problems: list[Problem] = []
    first: dict[str, int] = {}
    for index, name in enumerate(dimensions):
        field = f"statistics.dimensions[{index}]"
        if names_one_person(name, identifiers):
            problems.append((field, f"{name} keys one person: never a summary's dimension"))
        elif name in first:
            problems.append((field, f"repeats statistics.dimensions[{first[name]}]"))
        else:
            first[name] = index
    return problems


def _only_for(section: str, kind: PartnerKind, contract: PartnerContract) -> list[Problem]:
    # A section for another kind is never read: it would look, to a reviewer, like a setting
    # that applies when it does not.
    return [(section, f"only for kind {kind}, not {contract.kind}")]


def _destination_problems(contract: PartnerContract) -> list[Problem]:
    kind = PartnerKind.CUSTOMER_MATCH
    if contract.kind is not kind:
        return _only_for("destinations", kind, contract) if contract.destinations else []
    if not contract.destinations:
        return [("destinations", "at least one [destinations.<id>] required for customer_match")]
    problems: list[Problem] = []
    for name, dest in contract.destinations.items():
        # Destination.loginAccount is one ProductAccount: a type without an id (or the reverse)
        # cannot be sent.
        if (dest.login_account_type is None) != (dest.login_account_id is None):
            missing = "login_account_id" if dest.login_account_id is None else "login_account_type"
            problems.append(
                (f"destinations.{name}.{missing}", "login_account_type and _id go together")
            )
    return problems


def _fraud_problems(contract: PartnerContract) -> list[Problem]:
    kind = PartnerKind.FRAUD_CHECK
    if contract.kind is not kind:
        return _only_for("fraud", kind, contract) if contract.fraud is not None else []
    if FRAUD_PURPOSE not in contract.purposes:
        # The fraud adapter sends the fields of this purpose and nothing else.
        return [("purposes", f"kind fraud_check requires the purpose {FRAUD_PURPOSE}")]
    return []


def _export_problems(contract: PartnerContract) -> list[Problem]:
    kind, export = PartnerKind.ATTRIBUTE_EXPORT, contract.export
    if contract.kind is not kind:
        return _only_for("export", kind, contract) if export is not None else []
    problems: list[Problem] = []
    if contract.statistics is None:
        # Requirements: attribute estimation returns a statistical summary only; cells under
        # the minimum count would single a person out, so the contract must state the minimum.
        problems.append(("statistics.min_cell_count", "required for kind attribute_export"))
    else:
        problems += _dimension_problems(contract.statistics.dimensions or (), contract)
    if export is None:
        return [*problems, ("export", "[export] section required for kind attribute_export")]
    problems += _delimiter_problems(export.delimiter)
    seen: dict[str, int] = {}
    for index, column in enumerate(export.columns):
        field = f"export.columns[{index}]"
        if column in seen:
            problems.append((field, f"{column!r} repeats export.columns[{seen[column]}]"))
            continue
        seen[column] = index
        # Data minimisation (rule 13): a column must be allowed by every purpose the export may
        # be made for, so no purpose ever sends a field it does not list.
        for name, purpose in contract.purposes.items():
            if column not in purpose.fields:
                problems.append((field, f"{column!r} is not a field of purposes.{name}"))
    return problems


def _delimiter_problems(delimiter: str) -> list[Problem]:
    # RFC 4180 §2: the double quote and the line break have their own meaning in CSV. Outside
    # ASCII, a delimiter is several bytes in Shift_JIS and not a byte-level separator at all.
    printable = delimiter.isascii() and delimiter.isprintable() and not delimiter.isalnum()
    if delimiter == "\t" or (printable and delimiter != '"'):
        return []
    return [("export.delimiter", "must be a tab, a space or ASCII punctuation other than '\"'")]
