"""Fast entries for bulk transfers: one RFC 8785 template per decision shape.

The entries of one transfer differ per person only in a few string values (entry id, subject
id and key, payload hash, the consent evidence's values); everything else (partner, purpose,
basis, items, reasons, time, retention) is shared by every person whose decision has the same
shape. RFC 8785 orders an object's members by their keys alone (§3.2.3) and writes each value
independently of its neighbours, so the canonical bytes of an entry are the canonical bytes of
its shared part with each varying value's own canonical form spliced in at its place.

`TransferEntries` canonicalizes a shape once, with a unique marker string at every varying
place, splits the result at the markers (gateway/ledger/leaf_templates.py), and then builds
each entry as segment + value + segment + ... : a handful of C-level string encodes instead
of a walk of the whole entry. tests/unit/test_templates.py proves the bytes equal
`to_record(provision_entry(...))` for generated decisions and values.

The rest of an entry's cost is kept to a few C calls too: the previous decision's template
is recognised by comparing the decision's shared values with its own (the very same objects
when DecisionCache made the decisions, which tuple comparison settles without calling
__eq__), values go in unescaped when one check of them all finds nothing to escape (see
leaf_templates.quoted), a template is filled by one slice assignment and join, entry ids come
from a pool of UUIDs drawn from os.urandom in bulk (gateway/ledger/entry_ids.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, Final, TypeAlias

from gateway.contracts import PartnerContract
from gateway.ledger.canonical import MAX_SAFE_INTEGER, CanonicalizationError
from gateway.ledger.entries import (
    Outcome,
    RecordingMethod,
    outcome_entry,
    provision_entry,
    retain_until,
    utc_text,
)
from gateway.ledger.entry_ids import random_uuid
from gateway.ledger.leaf_templates import Markers, Order, fill_template
from gateway.ledger.store import LeafRecord
from gateway.policy import Decision

__all__ = ["EntryShape", "EntryTemplates", "OutcomeEntries", "TransferEntries"]

_ShapeKey: TypeAlias = tuple[Any, ...]
_Reasons: TypeAlias = tuple[tuple[tuple[str, str], ...], ...]  # a reasons override, frozen

# What of a Decision an entry shares with every other person's entry of the same shape; the
# subject id and the evidence values vary (the evidence's keys are part of the shape too).
# Read from the model's __dict__, where pydantic keeps field values: a third cheaper than
# attribute access on a BaseModel (whose __getattr__ slows every attribute read).
_SHARED: Final = itemgetter(
    "purpose",
    "allowed",
    "legal_basis",
    "cross_border_basis",
    "data_category",
    "reasons",
    "rule_ids",
    "fields_sent",
    "fields_dropped",
)

# --- provision entries ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class EntryShape:
    """One decision shape's template for one partner, outcome and recording method: what the
    entries of every person whose decision shares these values have in common, in any
    transfer. Get it with `TransferEntries.shape` and hand it to `TransferEntries.record_shaped`
    (of a transfer with the same partner, outcome and method); its fields are internal."""

    contract: PartnerContract  # the very object: a shape is only good for its own contract
    method: RecordingMethod
    decision: Decision  # one decision of the shape (its subject id and evidence values unused)
    parts: tuple[Any, ...]  # _SHARED(decision.__dict__)
    reasons: _Reasons | None  # the `reasons` override, frozen
    evidence_keys: tuple[str, ...]  # in the order the template takes their values
    evidence: Callable[[Mapping[str, str]], tuple[str, ...]]  # the values at evidence_keys
    pieces: list[str]  # the canonical JSON cut at the values' places (see _leaf), quotes kept
    pieces_null: list[str]  # the same with the payload hash's quotes gone: for a null
    # (id, *evidence, payload, subject id, key, transfer id, time, retain until) to text
    # order; None: the same
    order: Order | None
    purpose: str
    legal_basis: str
    outcome: str


class EntryTemplates:
    """Entry shapes kept across transfers, so a transfer of a shape seen before (every fraud
    check of one partner, every chunk of an upload) canonicalizes nothing: the transfer id,
    time and retention date are values of the template like the subject's. Bounded: past
    `limit` shapes (a contract reloaded many times, say) it starts afresh. One process-wide
    instance serves every TransferEntries not given its own."""

    def __init__(self, limit: int = 4096) -> None:
        self._limit = limit
        self._shapes: dict[_ShapeKey, EntryShape] = {}

    def get(self, key: _ShapeKey) -> EntryShape | None:
        return self._shapes.get(key)

    def put(self, key: _ShapeKey, shape: EntryShape) -> None:
        if len(self._shapes) >= self._limit:
            self._shapes.clear()
        self._shapes[key] = shape

    def __len__(self) -> int:
        return len(self._shapes)


_TEMPLATES: Final = EntryTemplates()


class TransferEntries:
    """Builds the provision entries of one transfer (one outcome, one time) as LeafRecords.

    Equivalent to `to_record(provision_entry(...))` for each decision, byte for byte, at a
    fraction of the cost once a decision shape has been seen, in this transfer or another
    (`templates`). `record` takes any decision; `shape` + `record_shaped` let a bulk caller
    that knows which people share a decision shape skip building a Decision per person.
    """

    def __init__(
        self,
        *,
        contract: PartnerContract,
        outcome: Outcome,
        transfer_id: str,
        time: datetime,
        method: RecordingMethod = RecordingMethod.SINGLE,
        new_id: Callable[[], str] = random_uuid,
        templates: EntryTemplates = _TEMPLATES,
    ) -> None:
        self._contract = contract
        self._partner_id = contract.id
        self._outcome = outcome
        self._transfer_id = transfer_id
        self._time = time.astimezone(UTC)  # as to_record gives it (the leaf says the same)
        self._method = method
        self._new_id = new_id
        self._retain_until = retain_until(time, method)
        # The values every entry of this transfer puts in the template's last three places.
        self._fixed = (transfer_id, utc_text(time), self._retain_until.isoformat())
        self._scope = (id(contract), outcome, method)  # the shape holds the contract: no reuse
        self._templates = templates
        self._last: EntryShape | None = None  # the shape `record` took last

    @property
    def transfer_id(self) -> str:
        return self._transfer_id

    def record(
        self,
        decision: Decision,
        *,
        subject_key: str,
        payload_sha256: str | None = None,
        reasons: Sequence[Mapping[str, str]] | None = None,
        entry_id: str | None = None,
    ) -> LeafRecord:
        """The entry of `decision` for its subject. Raises CanonicalizationError for a value
        with no RFC 8785 form (a lone surrogate)."""
        shape = self._last
        fields = decision.__dict__
        evidence = fields["evidence"]
        frozen = None if reasons is None else _frozen(reasons)
        # The common case: the same shape as the previous decision. Its shared values are
        # mostly the very same objects, which tuple comparison settles without calling __eq__.
        if not (
            shape is not None
            and shape.reasons == frozen
            and len(evidence) == len(shape.evidence_keys)
            and _SHARED(fields) == shape.parts
        ):
            shape = self._last = self._shape(decision, reasons, frozen)
        try:
            values = shape.evidence(evidence)
        except KeyError:  # as many evidence keys as the last shape's, but not the same ones
            shape = self._last = self._shape(decision, reasons, frozen)
            values = shape.evidence(evidence)
        return self._record(
            shape, entry_id, fields["subject_id"], subject_key, values, payload_sha256
        )

    def shape(
        self, decision: Decision, *, reasons: Sequence[Mapping[str, str]] | None = None
    ) -> EntryShape:
        """The shape of `decision`'s entries (with `reasons` in place of the decision's own,
        when given): all of an entry but its id, the subject id and key, the evidence's
        values and the payload hash. Built once per shape and kept."""
        return self._shape(decision, reasons, None if reasons is None else _frozen(reasons))

    def _shape(
        self,
        decision: Decision,
        reasons: Sequence[Mapping[str, str]] | None,
        frozen_reasons: _Reasons | None,
    ) -> EntryShape:
        parts = _SHARED(decision.__dict__)
        key = (self._scope, parts, frozen_reasons, frozenset(decision.evidence))
        shape = self._templates.get(key)
        if shape is None or shape.contract is not self._contract:
            shape = self._build_shape(decision, parts, reasons, frozen_reasons)
            self._templates.put(key, shape)
        return shape

    def record_shaped(
        self,
        shape: EntryShape,
        *,
        subject_id: str,
        subject_key: str,
        evidence: Mapping[str, str],
        payload_sha256: str | None = None,
        entry_id: str | None = None,
    ) -> LeafRecord:
        """Exactly `record(decision, ...)` for a decision of this `shape` (`self.shape(...)`)
        with this subject id and evidence, without a Decision. Evidence with other keys than
        the shape's takes the template of its own keys (built once). Raises ValueError for a
        shape of another contract, outcome or recording method; CanonicalizationError for a
        lone surrogate."""
        if (
            shape.contract is not self._contract
            or shape.outcome != self._outcome.value
            or shape.method is not self._method
        ):
            raise ValueError("the shape belongs to another contract, outcome or method")
        if len(evidence) != len(shape.evidence_keys):
            shape = self._with_evidence(shape, evidence)
        try:
            values = shape.evidence(evidence)
        except KeyError:  # as many keys, not the same ones
            shape = self._with_evidence(shape, evidence)
            values = shape.evidence(evidence)
        return self._record(shape, entry_id, subject_id, subject_key, values, payload_sha256)

    def _with_evidence(self, shape: EntryShape, evidence: Mapping[str, str]) -> EntryShape:
        """`shape` but with the keys of `evidence`."""
        decision = shape.decision.model_copy(update={"evidence": dict(evidence)})
        reasons = None if shape.reasons is None else [dict(r) for r in shape.reasons]
        return self._shape(decision, reasons, shape.reasons)

    def _record(
        self,
        shape: EntryShape,
        entry_id: str | None,
        subject_id: str,
        subject_key: str,
        evidence: tuple[str, ...],
        payload_sha256: str | None,
    ) -> LeafRecord:
        eid = self._new_id() if entry_id is None else entry_id
        if payload_sha256 is None:
            pieces, payload = shape.pieces_null, "null"
        else:
            pieces, payload = shape.pieces, payload_sha256
        values = (eid, *evidence, payload, subject_id, subject_key, *self._fixed)
        leaf, leaf_hash = fill_template(pieces, shape.order, values)
        return LeafRecord(
            leaf,
            leaf_hash,
            eid,
            self._transfer_id,
            self._time,
            subject_id,
            self._partner_id,
            shape.purpose,
            shape.legal_basis,
            shape.outcome,
            self._retain_until,
        )

    def _build_shape(
        self,
        decision: Decision,
        parts: tuple[Any, ...],
        reasons: Sequence[Mapping[str, str]] | None,
        frozen_reasons: _Reasons | None,
    ) -> EntryShape:
        """Canonicalize the shape with a unique marker at each varying value, then cut."""
        markers = Markers()
        # Markers in the order _record lists the values, which is their order in the text
        # when the evidence keys are in RFC 8785 order (by UTF-16 code units, §3.2.3).
        entry_id = markers.new()
        evidence_keys = tuple(sorted(decision.evidence, key=lambda k: k.encode("utf-16-be")))
        evidence = {k: markers.new() for k in evidence_keys}
        payload = markers.new()  # a string or null: one template with its quotes, one without
        subject_id = markers.new()
        subject_key, transfer_id, time, retain = (markers.new() for _ in range(4))
        entry = provision_entry(
            decision=decision.model_copy(update={"evidence": evidence, "subject_id": subject_id}),
            contract=self._contract,
            outcome=self._outcome,
            transfer_id=transfer_id,
            entry_id=entry_id,
            time=self._time,
            subject_key=subject_key,
            payload_sha256=payload,
            reasons=reasons,
            method=self._method,
        )
        # The two values provision_entry derives from the time become places too (the
        # hypothesis tests hold every transfer's bytes to the general builder's).
        entry["time"] = time
        entry["recording"] = {**entry["recording"], "retain_until": retain}
        pieces, order = markers.compile(entry)
        pieces_null, _ = markers.compile(entry, raw={payload})
        return EntryShape(
            contract=self._contract,
            method=self._method,
            decision=decision,
            parts=parts,
            reasons=frozen_reasons,
            evidence_keys=evidence_keys,
            evidence=_getter(evidence_keys),
            pieces=pieces,
            pieces_null=pieces_null,
            order=order,
            purpose=decision.purpose,
            legal_basis=decision.legal_basis.value,
            outcome=self._outcome.value,
        )


def _frozen(reasons: Sequence[Mapping[str, str]]) -> _Reasons:
    return tuple(tuple(r.items()) for r in reasons)


def _getter(keys: tuple[str, ...]) -> Callable[[Mapping[str, str]], tuple[str, ...]]:
    """A function of a mapping to its values at `keys`, a tuple (KeyError for one missing)."""
    if len(keys) > 1:
        return itemgetter(*keys)
    if keys:
        key = keys[0]
        return lambda mapping: (mapping[key],)
    return lambda mapping: ()


# --- outcome entries --------------------------------------------------------------------------


class OutcomeEntries:
    """Builds outcome entries (gateway.ledger.entries.outcome_entry) of one delivery fast:
    the same bytes as `to_record(outcome_entry(...))`, from one template."""

    def __init__(
        self,
        *,
        contract: PartnerContract,
        purpose: str,
        legal_basis: str | None,
        outcome: Outcome,
        operation: str,
        transfer_id: str,
        delivery_id: str,
        time: datetime,
        reasons: Sequence[Mapping[str, str]] = (),
        new_id: Callable[[], str] = random_uuid,
    ) -> None:
        markers = Markers()
        # Markers in the order `record` lists the values, their order in the text too.
        entry_id = markers.new()
        payload = markers.new()
        refers_to = markers.new()  # an integer: written raw, not as a JSON string
        entry = outcome_entry(
            contract=contract,
            purpose=purpose,
            legal_basis=legal_basis,
            outcome=outcome,
            operation=operation,
            transfer_id=transfer_id,
            delivery_id=delivery_id,
            entry_id=entry_id,
            time=time,
            subject_id=markers.new(),
            subject_key=markers.new(),
            payload_sha256=payload,
            refers_to=0,
            reasons=reasons,
        )
        entry["refers_to"] = refers_to
        self._pieces, self._order = markers.compile(entry, raw={refers_to})
        self._pieces_null, _ = markers.compile(entry, raw={refers_to, payload})
        self._new_id = new_id
        self._transfer_id = transfer_id
        self._time = time.astimezone(UTC)  # as to_record gives it (the leaf says the same)
        self._partner_id = contract.id
        self._purpose = purpose
        self._legal_basis = legal_basis or ""
        self._outcome = outcome.value
        self._retain_until = retain_until(time, RecordingMethod.SINGLE)

    def record(
        self, *, subject_id: str, subject_key: str, payload_sha256: str | None, refers_to: int
    ) -> LeafRecord:
        """Raises CanonicalizationError for a lone surrogate or a refers_to beyond
        MAX_SAFE_INTEGER (as to_record does: I-JSON); ValueError for refers_to < 0."""
        if refers_to < 0:
            raise ValueError("refers_to must be a log index")
        if refers_to > MAX_SAFE_INTEGER:
            raise CanonicalizationError("refers_to is beyond the integers I-JSON holds exactly")
        eid = self._new_id()
        if payload_sha256 is None:
            pieces, payload = self._pieces_null, "null"
        else:
            pieces, payload = self._pieces, payload_sha256
        values = (eid, payload, str(refers_to), subject_id, subject_key)
        leaf, leaf_hash = fill_template(pieces, self._order, values)
        return LeafRecord(
            leaf,
            leaf_hash,
            eid,
            self._transfer_id,
            self._time,
            subject_id,
            self._partner_id,
            self._purpose,
            self._legal_basis,
            self._outcome,
            self._retain_until,
        )
