"""Removal on withdrawal: when a person withdraws consent or asks to stop provision (APPI
Art. 35), the gateway asks every Customer Match partner that holds them to remove them
(Data Manager `audienceMembers:remove`), and logs that too.

Who holds the person is read from the transfer log: every `delivered` ingest outcome about
them that no removal refers to yet. What to send is the very member the partner received: the
ingest request is still in the outbox, so the member's bytes are taken from it at its
position and checked against the SHA-256 the log recorded for the person (the gateway keeps
no raw identifier to hash again, and needs none). Each ingest request is read and parsed
once, however many of the person's entries it holds.

The removals of one call are one append: per (partner, destination, purpose, legal basis),
one transfer of `allowed` outcome entries with operation `remove`, one for each delivered
entry and referring to it, sent as remove requests of at most MAX_MEMBERS distinct members
(a person uploaded 16,000 times with one email is one request of one member). The delivery
worker sends them and logs `delivered` (or `failed`) per entry, like any delivery; it also
calls `Removals.after_delivery` for every ingest it delivered, so an ingest that reaches the
partner after the person withdrew is removed as well (docs/provisions.md).

Removals are queued one call at a time (`Store.exclusive`, across processes on PostgreSQL):
a withdrawal and the worker's check after a delivery can both find the same delivered entry,
and the second must see the first's `remove` entries to leave it alone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

import structlog

from gateway.adapters.customer_match import MAX_MEMBERS, encode_remove_parts
from gateway.contract_kinds import Destination
from gateway.contracts import PartnerContract
from gateway.delivery.outbox import DeliveryMeta, OutboxRow, PendingDelivery, SideWrite
from gateway.ledger.entries import Outcome
from gateway.ledger.store import LeafRecord
from gateway.ledger.templates import OutcomeEntries
from gateway.ledger.transfer_filter import TransferFilter
from gateway.models import PartnerKind
from gateway.storage import Store

log = structlog.get_logger("gateway.removal")

__all__ = ["Held", "Removal", "Removals", "held_by_partners", "members_of", "requests_of"]

PAGE: Final = 1000
_MESSAGES: Final = {
    "consent_withdrawn": "The person withdrew consent; the partner must remove them.",
    "discontinuance": "The person asked to stop provision; the partner must remove them.",
}


class _Log(Protocol):
    """What removals need of the ledger: an append with side writes (Ledger.append)."""

    async def append(
        self, records: Sequence[LeafRecord], outbox: Sequence[SideWrite] = ()
    ) -> int: ...


@dataclass(frozen=True)
class Held:
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


@dataclass(frozen=True)
class Removal:
    """One delivered entry to remove: whose, why, and the member's bytes as sent."""

    held: Held
    subject_id: str
    why: str
    member: bytes


_GroupKey = tuple[str, str, str, str | None]  # partner, destination name, purpose, legal basis


async def held_by_partners(store: Store, subject_id: str) -> list[Held]:
    """Every delivered ingest about the person that no removal refers to yet, in log order.
    Raises StorageError."""
    delivered: dict[int, Held] = {}
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
                delivered[leaf.index] = Held(
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


def members_of(row: PendingDelivery, held: Iterable[Held]) -> dict[int, bytes]:
    """The members' bytes as the partner received them, by delivered index, for `held`
    entries of this request: the payload is parsed once. An entry the request does not hold
    (out of its range, or bytes that do not match the SHA-256 in the log) is left out."""
    try:
        members: list[Any] = json.loads(row.payload)["audienceMembers"]
    except (ValueError, KeyError, TypeError):
        return {}
    found: dict[int, bytes] = {}
    for item in held:
        position = item.allowed_index - row.first_index
        if not 0 <= position < min(row.entry_count, len(members)):
            continue
        part = json.dumps(members[position], ensure_ascii=False, separators=(",", ":")).encode()
        if hashlib.sha256(part).hexdigest() == item.payload_sha256:
            found[item.delivered_index] = part
    return found


def requests_of(removals: Iterable[Removal], limit: int = MAX_MEMBERS) -> list[list[Removal]]:
    """`removals`, in order, cut into requests of at most `limit` distinct members: identical
    member bytes are sent once per request, while every removal keeps its own log entry."""
    requests: list[list[Removal]] = []
    current: list[Removal] = []
    members: set[bytes] = set()
    for removal in removals:
        if removal.member not in members and len(members) >= limit:
            requests.append(current)
            current, members = [], set()
        current.append(removal)
        members.add(removal.member)
    if current:
        requests.append(current)
    return requests


# Queueing scans the log, then appends what it found: two calls interleaved (in this process
# or another on the same PostgreSQL database) would both find the same delivered entry.
_QUEUEING: Final = "removals"


class Removals:
    def __init__(
        self,
        *,
        store: Store,
        ledger: _Log,
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
        any) at `partners` (None: all). Returns how many remove requests were queued.
        Raises StorageError."""
        return await self.remove_each({subject_id: why}, purpose=purpose, partners=partners)

    async def remove_each(
        self, whys: Mapping[str, str], *, purpose: str | None, partners: frozenset[str] | None
    ) -> int:
        """`remove` for several people at once (subject id -> why), in one append: people
        held at the same destination share their remove requests. Raises StorageError."""
        async with self._store.exclusive(_QUEUEING):
            wanted: list[tuple[str, str, Held]] = []
            for subject_id, why in whys.items():
                for held in await held_by_partners(self._store, subject_id):
                    if self._wanted(held, purpose, partners):
                        wanted.append((subject_id, why, held))
            groups = await self._located(wanted)
            return await self._queue(groups)

    async def after_delivery(self, row: PendingDelivery, meta: DeliveryMeta) -> int:
        """An ingest request was delivered: whoever in it has since withdrawn consent for its
        purpose or asked to stop provision to its partner is removed again at once (their
        withdrawal's own removals could not see an ingest not yet delivered). Returns how
        many remove requests were queued. Raises StorageError."""
        contract = self._contracts.get(row.partner_id)
        if row.operation != "ingest" or contract is None:
            return 0
        if contract.kind is not PartnerKind.CUSTOMER_MATCH:
            return 0
        subjects = list(dict.fromkeys(subject for subject, _, _ in meta.subjects))
        stopped = await self._store.stopped_among(
            subjects, purpose=meta.purpose, partner_id=row.partner_id
        )
        if not stopped:
            return 0
        log.info("removal_after_delivery", delivery_id=row.delivery_id, people=len(stopped))
        return await self.remove_each(
            stopped, purpose=meta.purpose, partners=frozenset({row.partner_id})
        )

    def _wanted(self, held: Held, purpose: str | None, partners: frozenset[str] | None) -> bool:
        contract = self._contracts.get(held.partner_id)
        if contract is None or contract.kind is not PartnerKind.CUSTOMER_MATCH:
            return False
        if purpose is not None and held.purpose != purpose:
            return False
        return partners is None or held.partner_id in partners

    async def _located(
        self, wanted: Sequence[tuple[str, str, Held]]
    ) -> dict[_GroupKey, list[Removal]]:
        """The removals by (partner, destination, purpose, basis), each ingest request read
        and parsed once, each job once. What cannot be removed is logged as an error, never
        skipped silently: compliance must follow up. Raises StorageError."""
        by_request: dict[str, list[tuple[str, str, Held]]] = {}
        for item in wanted:
            by_request.setdefault(item[2].delivery_id, []).append(item)
        destinations: dict[str, str | None] = {}  # transfer id -> destination name
        groups: dict[_GroupKey, list[Removal]] = {}
        for delivery_id, items in by_request.items():
            row = await self._store.delivery(delivery_id)  # one request, not the whole job
            members = members_of(row, (held for _, _, held in items)) if row else {}
            for subject_id, why, held in items:
                if held.transfer_id not in destinations:
                    job = await self._store.job_of_transfer(held.transfer_id)
                    destinations[held.transfer_id] = job.job.destination if job else None
                name = destinations[held.transfer_id]
                member = members.get(held.delivered_index)
                if name is None or self._destination(held.partner_id, name) is None:
                    _impossible(held, "destination gone")
                elif member is None:
                    _impossible(held, "member not found")
                else:
                    key = (held.partner_id, name, held.purpose, held.legal_basis)
                    groups.setdefault(key, []).append(Removal(held, subject_id, why, member))
        for removals in groups.values():
            removals.sort(key=lambda r: r.held.delivered_index)
        return groups

    def _destination(self, partner_id: str, name: str) -> Destination | None:
        contract = self._contracts.get(partner_id)
        return contract.destinations.get(name) if contract is not None else None

    async def _queue(self, groups: Mapping[_GroupKey, Sequence[Removal]]) -> int:
        """Every group's entries and requests in one append. Returns the requests queued.
        Raises StorageError."""
        records: list[LeafRecord] = []
        rows: list[OutboxRow] = []
        now = self._clock()
        for (partner_id, name, purpose, basis), removals in groups.items():
            destination = self._destination(partner_id, name)
            assert destination is not None  # _located kept only groups that have one
            transfer = _Transfer(
                self._contracts[partner_id], destination, purpose, basis, self._new_id(), now
            )
            for request in requests_of(removals):
                row = transfer.row(request, self._new_id(), offset=len(records))
                records.extend(transfer.records(request, row.delivery_id))
                rows.append(row)
        if records:
            await self._ledger.append(records, outbox=rows)
        return len(rows)


@dataclass(frozen=True)
class _Transfer:
    """One removal transfer: its remove requests to one destination, and their entries."""

    contract: PartnerContract
    destination: Destination
    purpose: str
    legal_basis: str | None
    transfer_id: str
    now: datetime

    def records(self, request: Sequence[Removal], delivery_id: str) -> list[LeafRecord]:
        """One `allowed` remove entry per removal, referring to the delivered entry."""
        templates: dict[str, OutcomeEntries] = {}
        records: list[LeafRecord] = []
        for removal in request:
            entries = templates.get(removal.why)
            if entries is None:
                entries = templates[removal.why] = OutcomeEntries(
                    contract=self.contract,
                    purpose=self.purpose,
                    legal_basis=self.legal_basis,
                    outcome=Outcome.ALLOWED,
                    operation="remove",
                    transfer_id=self.transfer_id,
                    delivery_id=delivery_id,
                    time=self.now,
                    reasons=({"code": removal.why, "message": _message(removal.why)},),
                )
            held = removal.held
            records.append(
                entries.record(
                    subject_id=removal.subject_id,
                    subject_key=held.subject_key,
                    payload_sha256=held.payload_sha256,
                    refers_to=held.delivered_index,
                )
            )
        return records

    def row(self, request: Sequence[Removal], delivery_id: str, *, offset: int) -> OutboxRow:
        """The remove request: each distinct member once; its entries start at `offset`."""
        subjects = tuple((r.subject_id, r.held.subject_key, r.held.payload_sha256) for r in request)
        return OutboxRow(
            delivery_id=delivery_id,
            job_id=None,
            partner_id=self.contract.id,
            operation="remove",
            transfer_id=self.transfer_id,
            entries_offset=offset,
            entry_count=len(request),
            content_type="application/json",
            payload=encode_remove_parts(
                self.destination, list(dict.fromkeys(r.member for r in request))
            ),
            meta=DeliveryMeta(self.purpose, self.legal_basis, subjects).encode(),
            created_at=self.now,
        )


def _message(why: str) -> str:
    return _MESSAGES.get(why, "The partner must remove the person.")


def _impossible(held: Held, reason: str) -> None:
    log.error(
        "removal_impossible",
        partner=held.partner_id,
        delivery_id=held.delivery_id,
        reason=reason,
    )
