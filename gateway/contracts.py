"""Partner contracts: the codified agreement with each recipient, one TOML file per partner.

`PartnerContract` is the structural model (types, required fields, unknown keys refused).
`contract_problems()` holds the semantic rules (impossible combinations); `load_contract()` and
`load_contracts()` apply both and raise `ContractError` naming the file and the field.
"""

from __future__ import annotations

from datetime import date

from pydantic import Field

from gateway.models import (
    CrossBorderBasis,
    DataCategory,
    Frozen,
    LegalBasis,
    PartnerKind,
    Transform,
)


class LegalEntity(Frozen):
    name: str = Field(min_length=1)
    address: str = Field(min_length=1)
    representative: str = Field(min_length=1)


class Agreement(Frozen):
    reference: str = Field(min_length=1)
    valid_from: date
    valid_until: date


class Endpoint(Frozen):
    url: str = Field(min_length=1)
    credential_ref: str = Field(min_length=1)  # a name in the secret store, never the secret


class CrossBorder(Frozen):
    """APPI Art. 28 standing of the recipient."""

    basis: CrossBorderBasis
    # foreign_consent: the disclosure version (country, its system, the recipient's measures)
    # that a person's consent must point to.
    foreign_disclosure_version: str | None = None
    # equivalent_measures: the next periodic review (PPC rules Art. 18-2); overdue means no basis.
    equivalent_measures_review_due: date | None = None


class JointUse(Frozen):
    """Art. 27(5)(iii): the five items, published before the first transfer."""

    published_at: date
    data_items: tuple[str, ...] = Field(min_length=1)
    joint_users: str = Field(min_length=1)
    purpose: str = Field(min_length=1)
    responsible_party: str = Field(min_length=1)


class Purpose(Frozen):
    """What the contract allows for one purpose of use."""

    legal_bases: tuple[LegalBasis, ...] = Field(min_length=1)
    data_category: DataCategory
    fields: dict[str, Transform] = Field(min_length=1)  # field name -> transform
    # Art. 27(1)(ii)-(iv) standing on the contract (e.g. fraud detection): the written rationale
    # and the approver, recorded with every provision made under it.
    exception_rationale: str | None = None
    exception_approver: str | None = None


class Statistics(Frozen):
    """What may come back from an attribute-estimation recipient."""

    min_cell_count: int = Field(ge=1)


class PartnerContract(Frozen):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    kind: PartnerKind
    country: str = Field(pattern=r"^[A-Z]{2}$")  # ISO 3166-1 alpha-2
    legal_entity: LegalEntity
    agreement: Agreement
    endpoint: Endpoint
    cross_border: CrossBorder
    # The recipient matches our data against its own person by person, or pools several clients'
    # data: entrustment is then not available (requirements rule 4).
    recipient_matches_records: bool = True
    purposes: dict[str, Purpose] = Field(min_length=1)
    joint_use: JointUse | None = None
    statistics: Statistics | None = None

    def in_force(self, today: date) -> bool:
        return self.agreement.valid_from <= today <= self.agreement.valid_until
