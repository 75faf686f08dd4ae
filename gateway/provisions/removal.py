"""Removal on withdrawal: when a person withdraws consent or asks to stop provision (APPI
Art. 35), the gateway asks every Customer Match partner that holds them to remove them
(Data Manager `audienceMembers:remove`), and logs that too.

Who holds the person is read from the transfer log: every `delivered` ingest outcome about
them that no removal refers to yet. What to send is the very member the partner received: the
ingest request is still in the outbox, so the member's bytes are taken from it at its
position and checked against the SHA-256 the log recorded for the person (the gateway keeps
no raw identifier to hash again, and needs none).

Each removal is one transfer: per (partner, destination), `allowed` outcome entries with
operation `remove` that refer to the delivered ingest entries, and one outbox row, in one
append; the delivery worker sends it and logs `delivered` (or `failed`) like any delivery.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import structlog

from gateway.adapters.customer_match import encode_remove_parts
from gateway.contracts import PartnerContract
from gateway.delivery.outbox import DeliveryMeta, OutboxRow, PendingDelivery
from gateway.ledger.entries import Outcome
from gateway.ledger.service import Ledger
from gateway.ledger.store import TransferFilter
from gateway.ledger.templates import OutcomeEntries
from gateway.models import PartnerKind
from gateway.storage import Store

log = structlog.get_logger("gateway.removal")

__all__ = ["Removals", "held_by_partners"]

PAGE: Final = 1000


@dataclass(frozen=True)
class _Held:
    """One delivered ingest of the person: where, and which member of which request."""

    partner_id: str
    purpose: str
    legal_basis: str | None
    transfer_id: str
    delivery_id: str
    delivered_index: int  # the `delivered` outcome entry
    allowed_index: int  # the provision entry it refers to (the member's position follows)
    payload_sha256: str
    subject_key: str


async def held_by_partners(store: Store, subject_id: str) -> list[_Held]:
    """Every delivered ingest about the person that no removal refers to yet."""
    delivered: dict[int, _Held] = {}
    removed: set[int] = set()
    after = -1
    while page := await store.ledger_find(
        TransferFilter(subject_id=subject_id), after=after, limit=PAGE
    ):
        for leaf in page:
            entry = json.loads(leaf.leaf) if leaf.leaf else {}
            operation = entry.get("operation")
            if operation == "remove" and isinstance(entry.get("refers_to"), int):
                removed.add(entry["refers_to"])
            elif operation == "ingest" and entry.get("outcome") == Outcome.DELIVERED.value:
                delivered[leaf.index] = _Held(
                    partner_id=entry["partner"]["id"],
                    purpose=entry["purpose"],
                    legal_basis=entry.get("legal_basis"),
                    transfer_id=entry["transfer_id"],
                    delivery_id=entry["delivery_id"],
                    delivered_index=leaf.index,
                    allowed_index=entry["refers_to"],
                    payload_sha256=entry["payload_sha256"],
                    subject_key=entry["subject"]["key"],
                )
        after = page[-1].index
    return [held for index, held in delivered.items() if index not in removed]


def member_from(row: PendingDelivery, held: _Held) -> bytes | None:
    """The member's bytes as the partner received them; None if the request does not hold
    them (checked against the SHA-256 in the log)."""
    position = held.allowed_index - row.first_index
    if not 0 <= position < row.entry_count:
        return None
    members: list[Any] = json.loads(row.payload)["audienceMembers"]
    part = json.dumps(members[position], ensure_ascii=False, separators=(",", ":")).encode()
    return part if hashlib.sha256(part).hexdigest() == held.payload_sha256 else None


class Removals:
    def __init__(
        self,
        *,
        store: Store,
        ledger: Ledger,
        contracts: Mapping[str, PartnerContract],
        clock: Callable[[], datetime],
        new_id: Callable[[], str],
    ) -> None:
        self._store = store
        self._ledger = ledger
        self._contracts = contracts
        self._clock = clock
        self._new_id = new_id

    async def remove(
        self, subject_id: str, *, purpose: str | None, partners: frozenset[str] | None, why: str
    ) -> int:
        """Queue removals of the person from the partners holding them, for `purpose` (None:
        any) at `partners` (None: all). Returns how many removal requests were queued.
        Raises StorageError."""
        queued = 0
        for held in await held_by_partners(self._store, subject_id):
            contract = self._contracts.get(held.partner_id)
            if contract is None or contract.kind is not PartnerKind.CUSTOMER_MATCH:
                continue
            if purpose is not None and held.purpose != purpose:
                continue
            if partners is not None and held.partner_id not in partners:
                continue
            queued += await self._queue(contract, subject_id, held, why)
        return queued

    async def _queue(
        self, contract: PartnerContract, subject_id: str, held: _Held, why: str
    ) -> int:
        job = await self._store.job_of_transfer(held.transfer_id)
        row = await self._store.delivery(held.delivery_id)  # one request, not the whole job
        destination = contract.destinations.get(job.job.destination or "") if job else None
        member = member_from(row, held) if row is not None else None
        if destination is None or member is None:  # never silently: compliance must follow up
            log.error(
                "removal_impossible",
                partner=contract.id,
                delivery_id=held.delivery_id,
                reason="destination gone" if destination is None else "member not found",
            )
            return 0
        now = self._clock()
        transfer_id, delivery_id = self._new_id(), self._new_id()
        reasons = ({"code": why, "message": "The person withdrew; the partner must remove."},)
        entries = OutcomeEntries(
            contract=contract,
            purpose=held.purpose,
            legal_basis=held.legal_basis,
            outcome=Outcome.ALLOWED,
            operation="remove",
            transfer_id=transfer_id,
            delivery_id=delivery_id,
            time=now,
            reasons=reasons,
        )
        record = entries.record(
            subject_id=subject_id,
            subject_key=held.subject_key,
            payload_sha256=held.payload_sha256,
            refers_to=held.delivered_index,
        )
        meta = DeliveryMeta(
            held.purpose, held.legal_basis, ((subject_id, held.subject_key, held.payload_sha256),)
        )
        outbox = OutboxRow(
            delivery_id=delivery_id,
            job_id=None,
            partner_id=contract.id,
            operation="remove",
            transfer_id=transfer_id,
            entries_offset=0,
            entry_count=1,
            content_type="application/json",
            payload=encode_remove_parts(destination, [member]),
            meta=meta.encode(),
            created_at=now,
        )
        await self._ledger.append([record], outbox=[outbox])
        return 1
