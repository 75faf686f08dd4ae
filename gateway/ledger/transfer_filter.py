"""The filters of `GET /v1/transfers` (and of a person's disclosures), which every
LedgerStore answers."""

from __future__ import annotations

from datetime import datetime

from gateway.models import Frozen


class TransferFilter(Frozen):
    """Filters of `GET /v1/transfers`; None matches everything."""

    subject_id: str | None = None
    partner_id: str | None = None
    purpose: str | None = None
    legal_basis: str | None = None
    outcome: str | None = None
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
