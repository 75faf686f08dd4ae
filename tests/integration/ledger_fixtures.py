"""Log entries for tests: provision decisions about a few people, appended through the Ledger."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from gateway.contracts import PartnerContract
from gateway.ledger.entries import Outcome, provision_entry, to_record
from gateway.ledger.service import Ledger
from gateway.models import LegalBasis, SubjectState
from gateway.policy import ProvisionItem, decide
from gateway.pseudonym import subject_key


async def record_transfer(
    ledger: Ledger,
    contract: PartnerContract,
    states: Sequence[SubjectState],
    *,
    now: datetime,
    outcome_if_allowed: Outcome = Outcome.ALLOWED,
) -> str:
    """Decide and log one transfer of `email` to `contract` for each person; returns its id."""
    purpose = next(iter(contract.purposes))
    basis = contract.purposes[purpose].legal_bases[0]
    transfer_id = str(uuid.uuid4())
    records = []
    for state in states:
        item = ProvisionItem(
            subject_id=state.subject_id,
            purpose=purpose,
            legal_basis=LegalBasis(basis),
            fields=("email", "nickname"),
        )
        decision = decide(item, contract, state, now)
        entry = provision_entry(
            decision=decision,
            contract=contract,
            outcome=outcome_if_allowed if decision.allowed else Outcome.DENIED,
            transfer_id=transfer_id,
            entry_id=str(uuid.uuid4()),
            time=now,
            subject_key=subject_key(state.subject_id, key_id="k1", key=b"k" * 32),
            payload_sha256="ab" * 32 if decision.allowed else None,
        )
        records.append(to_record(entry))
    await ledger.append(records)
    return transfer_id
