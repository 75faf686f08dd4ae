"""Partner contracts: the codified agreement with each recipient, one TOML file per partner.

`PartnerContract` is the structural model (types, required fields, unknown keys refused).
`contract_problems()` holds the semantic rules (impossible combinations); `load_contract()` and
`load_contracts()` apply both and raise `ContractError` naming the file and the field. The
sections of one provision kind ([destinations], [fraud], [export]) live in `contract_kinds`.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import BeforeValidator, Field, ValidationError
from pydantic_core import ErrorDetails

from gateway.contract_kinds import (
    Destination,
    DestinationId,
    ExportFormat,
    FraudSettings,
    Name,
    Problem,
    kind_problems,
)
from gateway.errors import ContractError
from gateway.models import (
    ART27_1_EXCEPTIONS,
    NOT_THIRD_PARTY,
    CrossBorderBasis,
    DataCategory,
    Frozen,
    LegalBasis,
    PartnerKind,
    Transform,
)

# Art. 28(1): the countries the PPC designates as having an equivalent system are the EU/EEA
# member states and the United Kingdom. Nowhere else.
EEA_AND_UK: frozenset[str] = frozenset(
    {
        # EU 27 (ISO 3166-1: Greece is GR, not the EU's "EL")
        *("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU"),
        *("IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"),
        # EEA beyond the EU
        *("IS", "LI", "NO"),
        "GB",
    }
)
# Art. 41(6) / Art. 42: pseudonymously processed information leaves only under laws and
# regulations (Art. 27(1)(i)) or the Art. 27(5) cases, never on consent.
PSEUDONYMIZED_BASES: frozenset[LegalBasis] = frozenset(
    {LegalBasis.LAWS_AND_REGULATIONS} | NOT_THIRD_PARTY
)
# Art. 31(1): personally referable information needs the recipient's confirmation that the
# person consented, unless an Art. 27(1) exception applies.
PERSONALLY_REFERABLE_BASES: frozenset[LegalBasis] = frozenset(
    {LegalBasis.PRI_CONSENT_CONFIRMED} | ART27_1_EXCEPTIONS
)
CATEGORY_BASES: dict[DataCategory, tuple[frozenset[LegalBasis], str]] = {
    DataCategory.PSEUDONYMIZED: (
        PSEUDONYMIZED_BASES,
        "Art. 41(6)/42 allow only laws_and_regulations or Art. 27(5), never consent",
    ),
    DataCategory.PERSONALLY_REFERABLE: (
        PERSONALLY_REFERABLE_BASES,
        "Art. 31 needs pri_consent_confirmed or an Art. 27(1) exception",
    ),
}
HASHED_SUFFIX = "_sha256"


def _date_only(value: object) -> object:
    """TOML has a date type: a datetime, a number or a quoted string where a date belongs is a
    typing mistake (partners/README.md: dates are TOML dates, unquoted)."""
    if isinstance(value, datetime) or not isinstance(value, date):
        kind = "a quoted string" if isinstance(value, str) else type(value).__name__
        raise ValueError(f"an unquoted TOML date like 2025-04-01 is required, got {kind}")
    return value


TomlDate = Annotated[date, BeforeValidator(_date_only)]


class LegalEntity(Frozen):
    name: str = Field(min_length=1)
    address: str = Field(min_length=1)
    representative: str = Field(min_length=1)


class Agreement(Frozen):
    reference: str = Field(min_length=1)
    valid_from: TomlDate
    valid_until: TomlDate


class Endpoint(Frozen):
    url: str = Field(min_length=1, pattern=r"^https?://\S+$")
    credential_ref: str = Field(min_length=1)  # a name in the secret store, never the secret


class CrossBorder(Frozen):
    """APPI Art. 28 standing of the recipient."""

    basis: CrossBorderBasis
    # foreign_consent: the disclosure version (country, its system, the recipient's measures)
    # that a person's consent must point to.
    foreign_disclosure_version: str | None = Field(default=None, min_length=1)
    # equivalent_measures: the next periodic review (PPC Rules Art. 18(1)); overdue means no basis.
    equivalent_measures_review_due: TomlDate | None = None


class JointUse(Frozen):
    """Art. 27(5)(iii): the five items, published before the first transfer."""

    published_at: TomlDate
    data_items: tuple[str, ...] = Field(min_length=1)
    joint_users: str = Field(min_length=1)
    purpose: str = Field(min_length=1)
    responsible_party: str = Field(min_length=1)


class Purpose(Frozen):
    """What the contract allows for one purpose of use."""

    legal_bases: tuple[LegalBasis, ...] = Field(min_length=1)
    data_category: DataCategory
    fields: dict[Name, Transform] = Field(min_length=1)  # field name -> transform
    # Art. 27(1)(ii)-(iv) standing on the contract (e.g. fraud detection): the written rationale
    # and the approver, recorded with every provision made under it.
    exception_rationale: str | None = None
    exception_approver: str | None = None


class Statistics(Frozen):
    """What may come back from an attribute-estimation recipient."""

    # strict: TOML has integers; 10.0 or "10" is a typing mistake, not a count.
    min_cell_count: int = Field(ge=1, strict=True)
    # The dimensions a summary may break its counts down by; a summary naming any other is
    # refused. None: any lowercase name that keys no one (at most 16, as a summary holds).
    dimensions: tuple[Name, ...] | None = Field(default=None, min_length=1, max_length=16)


class PartnerContract(Frozen):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    kind: PartnerKind
    country: str = Field(pattern=r"^[A-Z]{2}$")  # ISO 3166-1 alpha-2
    legal_entity: LegalEntity
    agreement: Agreement
    endpoint: Endpoint
    cross_border: CrossBorder
    # The recipient matches our data against its own person by person, or pools several clients'
    # data: entrustment is then not available (requirements rule 4). strict: "no" is not False.
    recipient_matches_records: bool = Field(default=True, strict=True)
    purposes: dict[Name, Purpose] = Field(min_length=1)
    joint_use: JointUse | None = None
    statistics: Statistics | None = None
    destinations: dict[DestinationId, Destination] = Field(default_factory=dict)  # customer_match
    fraud: FraudSettings | None = None  # fraud_check; defaults when absent: fraud_settings()
    export: ExportFormat | None = None  # attribute_export, required there

    def in_force(self, today: date) -> bool:
        return self.agreement.valid_from <= today <= self.agreement.valid_until

    def consent_purposes(self) -> frozenset[str]:
        """The purposes a person's consent may be recorded for: the provision purposes, and
        each destination's personalization purpose (a consent that only sets a signal)."""
        signals = (d.personalization_purpose for d in self.destinations.values())
        return frozenset(self.purposes).union(p for p in signals if p is not None)

    def fraud_settings(self) -> FraudSettings:
        """[fraud], or its defaults. Raises ValueError on another kind (the caller's bug)."""
        if self.kind is not PartnerKind.FRAUD_CHECK:
            raise ValueError(f"{self.id} is a {self.kind} contract, not fraud_check")
        return self.fraud if self.fraud is not None else FraudSettings()


# --- semantic rules: pure, so the policy engine can be tested against bad-but-parsed contracts


_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def contract_problems(contract: PartnerContract, today: date) -> list[Problem]:
    """Impossible combinations in a structurally valid contract; empty when it may be used."""
    problems = _agreement_problems(contract.agreement, today)
    problems += _cross_border_problems(contract, today)
    for name, purpose in contract.purposes.items():
        problems += _basis_problems(contract, f"purposes.{name}", purpose)
        problems += _category_problems(f"purposes.{name}", purpose)
        problems += _field_problems(f"purposes.{name}", purpose)
    problems += kind_problems(contract)  # [destinations], [fraud], [export], [statistics]
    url = urlsplit(contract.endpoint.url)
    if url.scheme != "https" and url.hostname not in _LOOPBACK:
        # Personal data crosses networks only over TLS; plain http is for the local sandbox.
        problems.append(("endpoint.url", "must be https (http only for 127.0.0.1/localhost)"))
    return problems


def _agreement_problems(agreement: Agreement, today: date) -> list[Problem]:
    problems: list[Problem] = []
    if agreement.valid_from > agreement.valid_until:
        problems.append(
            ("agreement.valid_from", f"after valid_until ({agreement.valid_until.isoformat()})")
        )
    if agreement.valid_until < today:
        # No written agreement, no provision: attribute exports and Art. 28(1) equivalent
        # measures both rest on the contract being in force.
        problems.append(("agreement.valid_until", f"expired ({agreement.valid_until} < {today})"))
    return problems


def _cross_border_problems(contract: PartnerContract, today: date) -> list[Problem]:
    cb, field = contract.cross_border, "cross_border.basis"
    domestic = cb.basis is CrossBorderBasis.DOMESTIC
    if contract.country == "JP" and not domestic:
        return [(field, f"country JP requires domestic, not {cb.basis}")]
    if contract.country != "JP" and domestic:
        # Art. 28 applies to any recipient in a foreign country: a basis must be named.
        return [(field, f"country {contract.country} is foreign: domestic is not a basis")]
    if cb.basis is CrossBorderBasis.DESIGNATED_COUNTRY and contract.country not in EEA_AND_UK:
        # Art. 28(1): only the EU/EEA and the UK are designated by the PPC.
        return [(field, f"{contract.country} is not a designated country (EU/EEA, GB)")]
    if cb.basis is CrossBorderBasis.FOREIGN_CONSENT and cb.foreign_disclosure_version is None:
        # Art. 28(2): the consent is valid only after the disclosure it points to.
        return [("cross_border.foreign_disclosure_version", "required for foreign_consent")]
    if cb.basis is not CrossBorderBasis.EQUIVALENT_MEASURES:
        return []
    due, due_field = (
        cb.equivalent_measures_review_due,
        "cross_border.equivalent_measures_review_due",
    )
    if due is None:
        return [(due_field, "required for equivalent_measures")]
    if due < today:
        # Art. 28(3), PPC Rules Art. 18(1): the periodic check lapsed, and the basis with it.
        return [(due_field, f"review overdue ({due} < {today})")]
    return []


def _basis_problems(contract: PartnerContract, prefix: str, purpose: Purpose) -> list[Problem]:
    field, bases = f"{prefix}.legal_bases", set(purpose.legal_bases)
    problems: list[Problem] = []
    if LegalBasis.OPT_OUT in bases:
        # Art. 27(2) opt-out provision exists in law; the gateway does not offer it (rule 5).
        problems.append((field, "opt_out (Art. 27(2)) is not offered by this gateway"))
    foreign_consent = contract.cross_border.basis is CrossBorderBasis.FOREIGN_CONSENT
    if foreign_consent and bases & NOT_THIRD_PARTY:
        # Art. 28(1) second sentence: where foreign consent is the basis, Art. 27 does not
        # apply, so the recipient cannot be "not a third party" under Art. 27(5).
        names = ", ".join(sorted(bases & NOT_THIRD_PARTY))
        problems.append((field, f"{names} not available to a foreign_consent recipient (Art. 28)"))
    if LegalBasis.ENTRUSTMENT in bases and contract.recipient_matches_records:
        # Art. 27(5)(i) covers outsourcing only: a recipient that matches our data against its
        # own, or pools several clients' data, uses it for itself (requirements rule 4).
        problems.append((field, "entrustment with a recipient that matches records"))
    if LegalBasis.JOINT_USE in bases and contract.joint_use is None:
        # Art. 27(5)(iii): the five items must be published before the first transfer.
        problems.append(("joint_use", f"{prefix} allows joint_use: [joint_use] section required"))
    return problems


def _category_problems(prefix: str, purpose: Purpose) -> list[Problem]:
    """Bases the data category itself rules out, whatever the recipient."""
    allowed_and_why = CATEGORY_BASES.get(purpose.data_category)
    if allowed_and_why is None:
        return []
    allowed, why = allowed_and_why
    barred = set(purpose.legal_bases) - allowed
    if not barred:
        return []
    names = ", ".join(sorted(barred))
    return [(f"{prefix}.legal_bases", f"{purpose.data_category} cannot leave under {names}: {why}")]


def _field_problems(prefix: str, purpose: Purpose) -> list[Problem]:
    problems: list[Problem] = []
    for name, transform in purpose.fields.items():
        hashed_name = name.endswith(HASHED_SUFFIX)
        prehashed = transform is Transform.PREHASHED
        # A caller-hashed value must be named as one and passed through, never hashed again
        # (a hash of a hash never matches); a plain field never takes a hash.
        if hashed_name and not prehashed:
            problems.append(
                (
                    f"{prefix}.fields.{name}",
                    f"a *{HASHED_SUFFIX} field must be prehashed, not {transform}",
                )
            )
        elif prehashed and not hashed_name:
            problems.append(
                (f"{prefix}.fields.{name}", f"prehashed is only for *{HASHED_SUFFIX} fields")
            )
    return problems


# --- loading: TOML -> structural model -> semantic rules, every failure a ContractError


def load_contract(path: Path, today: date) -> PartnerContract:
    """Read and validate one contract file.

    Raises ContractError (the first problem) on an unreadable file, a TOML syntax error, a
    structural error, an id that differs from the file stem, or a semantic problem.
    """
    contract, errors = _check_file(path, today)
    if errors:
        raise errors[0]
    assert contract is not None  # no errors means a contract
    return contract


def load_contracts(directory: Path, today: date) -> dict[str, PartnerContract]:
    """Every `*.toml` contract in `directory`, by id.

    Raises ContractError (the first one) if any file is invalid, ids repeat, or the directory
    is missing or holds no contract: the service must not start without its contracts.
    """
    contracts, errors = check_contracts(directory, today)
    if errors:
        raise errors[0]
    return contracts


def check_contracts(
    directory: Path, today: date
) -> tuple[dict[str, PartnerContract], list[ContractError]]:
    """Validate every contract in `directory`, collecting every error instead of stopping."""
    try:
        files = _contract_files(directory)
    except ContractError as exc:
        return {}, [exc]
    checked = [(path, *_check_file(path, today)) for path in files]
    owners = _id_owners(checked)
    contracts: dict[str, PartnerContract] = {}
    errors: list[ContractError] = []
    for path, contract, file_errors in checked:
        if contract is not None and owners[contract.id] != path:
            message = f"duplicate id {contract.id!r}, already in {owners[contract.id]}"
            file_errors.append(ContractError(str(path), "id", message))
        errors += file_errors
        if contract is not None and not file_errors:
            contracts[contract.id] = contract
    return contracts, errors


Checked = tuple[Path, PartnerContract | None, list[ContractError]]


def _id_owners(checked: list[Checked]) -> dict[str, Path]:
    """Which file owns each id: the one named after it, else the first in name order."""
    owners: dict[str, Path] = {}
    for path, contract, _ in checked:
        if contract is not None and (contract.id not in owners or path.stem == contract.id):
            owners[contract.id] = path
    return owners


def _contract_files(directory: Path) -> list[Path]:
    where = str(directory)
    if not directory.is_dir():
        missing = "no such directory" if not directory.exists() else "not a directory"
        raise ContractError(where, "(directory)", f"{missing}: partner contracts are required")
    # Dotfiles are editor leftovers (.#x.toml), not contracts.
    files = sorted(
        p for p in directory.glob("*.toml") if p.is_file() and not p.name.startswith(".")
    )
    if not files:
        raise ContractError(where, "(directory)", "no *.toml partner contracts")
    return files


def _check_file(path: Path, today: date) -> tuple[PartnerContract | None, list[ContractError]]:
    """The contract (None when it does not parse) and every error found in the file."""
    where = str(path)
    try:
        data = _read_toml(path)
        contract = PartnerContract.model_validate(data)
    except ContractError as exc:
        return None, [exc]
    except ValidationError as exc:
        return None, [ContractError(where, _dotted(e["loc"]), _message(e)) for e in exc.errors()]
    errors = [ContractError(where, f, m) for f, m in contract_problems(contract, today)]
    if contract.id != path.stem:
        # One file per partner, found by its id: the name must say which partner it is.
        errors.insert(
            0, ContractError(where, "id", f"{contract.id!r} must equal the file name {path.stem!r}")
        )
    return contract, errors


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        # The decoder's message carries "(at line N, column M)".
        raise ContractError(str(path), "(toml)", f"TOML syntax error: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ContractError(str(path), "(file)", f"cannot read: {exc}") from exc


def _dotted(loc: Sequence[int | str]) -> str:
    """Pydantic's error location as the dotted field: ("purposes", "x", "legal_bases", 0) ->
    "purposes.x.legal_bases[0]". A bad dict key is reported at the key itself."""
    out = ""
    for part in loc:
        if part == "[key]":
            continue
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(contract)"


def _message(error: ErrorDetails) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "value_error":  # our own validators already say what they got
        return error["msg"].removeprefix("Value error, ")
    # Say what was found (its TOML type), never echo the value into logs.
    return f"{error['msg']} (got {type(error['input']).__name__})"
