"""Fast entries for bulk transfers: one RFC 8785 template per decision shape.

The entries of one transfer differ per person only in a few string values (entry id, subject
id and key, payload hash, the consent evidence's values); everything else (partner, purpose,
basis, items, reasons, time, retention) is shared by every person whose decision has the same
shape. RFC 8785 orders an object's members by their keys alone (§3.2.3) and writes each value
independently of its neighbours, so the canonical bytes of an entry are the canonical bytes of
its shared part with each varying value's own canonical form spliced in at its place.

`TransferEntries` canonicalizes a shape once, with a unique marker string at every varying
place, splits the result at the markers, and then builds each entry as segment + value +
segment + ... : a handful of C-level string encodes instead of a walk of the whole entry.
tests/unit/test_templates.py proves the bytes equal `to_record(provision_entry(...))` for
generated decisions and values.

The rest of an entry's cost is kept to a few C calls too: the previous decision's template
is recognised by comparing the decision's shared values with its own (the very same objects
when DecisionCache made the decisions, which tuple comparison settles without calling
__eq__), values go in unescaped when one check of them all finds nothing to escape (see
_quoted), a template is filled by one slice assignment and join, entry ids come from a pool of
UUIDs drawn from os.urandom in bulk.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from json.encoder import encode_basestring
from operator import itemgetter
from typing import Any, Final, TypeAlias

from gateway.contracts import PartnerContract
from gateway.ledger.canonical import CanonicalizationError, canonicalize
from gateway.ledger.entries import (
    Outcome,
    RecordingMethod,
    outcome_entry,
    provision_entry,
    retain_until,
)
from gateway.ledger.store import LeafRecord
from gateway.policy import Decision

__all__ = ["EntryShape", "OutcomeEntries", "TransferEntries", "random_uuid"]

_LEAF_HASH: Final = sha256(b"\x00")  # RFC 9162 §2.1.1: a leaf hash is SHA-256(0x00 || leaf)
_ShapeKey: TypeAlias = tuple[Any, ...]
_Order: TypeAlias = Callable[[Sequence[str]], tuple[str, ...]]
_Reasons: TypeAlias = tuple[tuple[tuple[str, str], ...], ...]  # a reasons override, frozen
_string: Final = encode_basestring  # a str as a JSON string, escaped as RFC 8785 §3.2.2.2 does
# What RFC 8785 writes as it is inside a JSON string, of ASCII: all but `"`, `\` and controls.
_PLAIN: Final = bytes(c for c in range(0x20, 0x80) if c not in b'"\\')

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

# --- entry ids --------------------------------------------------------------------------------

_UUID_BATCH: Final = 256  # ids drawn per os.urandom call
# RFC 9562 §5.4 spelled 8-4-4-4-12 (36 characters; a space after each id in a batch): the
# version digit (the 13th hex digit) is 4, the variant digit (the 17th) 8, 9, a or b.
_UUID_BLANKS: Final = b"00000000-0000-4000-8000-000000000000 " * _UUID_BATCH
_UUID_STEP: Final = 37
# (hex digit of the 32, its place among the 37 characters): all but the version digit.
_UUID_PLACES: Final = tuple(
    (digit, digit + (digit >= 8) + (digit >= 12) + (digit >= 16) + (digit >= 20))
    for digit in range(32)
    if digit != 12
)
_VARIANT_DIGIT: Final = 16
# A random hex digit to the variant's: 0b10 then the digit's two low bits, which stay random.
_VARIANT: Final = bytes.maketrans(b"0123456789abcdef", b"89ab" * 4)
_uuids: list[str] = []  # formatted, not handed out yet; list.pop is atomic under the GIL
# A forked child must not hand out the ids its parent will (the random module does the same).
os.register_at_fork(after_in_child=_uuids.clear)


def random_uuid() -> str:
    """A random (version 4) UUID, RFC 9562 §5.4, spelled as str(uuid.uuid4()) spells it:
    122 bits from os.urandom, drawn 256 ids at a time. uuid4() costs several times as much
    (a syscall and a UUID object per call), which shows when a million entries are built."""
    try:
        return _uuids.pop()
    except IndexError:
        fresh = _fresh_uuids()
        _uuids.extend(fresh[1:])
        return fresh[0]


def _fresh_uuids() -> list[str]:
    """_UUID_BATCH random UUIDs, formatted a column at a time: each hex digit of every id is
    copied into its place in all of them by one strided slice assignment (C loops, not a
    Python one per id), then the batch is cut at the spaces."""
    digits = os.urandom(16 * _UUID_BATCH).hex().encode()
    out = bytearray(_UUID_BLANKS)
    for digit, place in _UUID_PLACES:
        column = digits[digit::32]
        if digit == _VARIANT_DIGIT:
            column = column.translate(_VARIANT)
        out[place::_UUID_STEP] = column
    return out.decode().split()


def _quoted(values: tuple[str, ...]) -> tuple[str, ...]:
    """`values` as they go between the quotes a template has around each string's place:
    escaped as RFC 8785 §3.2.2.2 escapes strings (the C JSON encoder's escaping). Mostly
    there is nothing to escape, which one check of all of them at once finds."""
    plain = "".join(values)
    if plain.isascii() and not plain.encode().translate(None, _PLAIN):
        return values
    return tuple(_string(value)[1:-1] for value in values)


def _leaf(pieces: list[str], values: Sequence[str]) -> tuple[bytes, bytes]:
    """The leaf of a template (`pieces`: its text cut at the values' places, with "" where
    each value goes) filled with `values` (in text order), and its leaf hash. Raises
    CanonicalizationError for a lone surrogate."""
    filled = pieces.copy()
    filled[1::2] = values  # ValueError unless there are exactly as many values as places
    try:
        leaf = "".join(filled).encode()
    except UnicodeEncodeError as exc:  # RFC 8785 §3.2.2.2: lone surrogates are refused
        raise CanonicalizationError("string holds a lone surrogate") from exc
    digest = _LEAF_HASH.copy()
    digest.update(leaf)
    return leaf, digest.digest()


# --- provision entries ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class EntryShape:
    """One decision shape's template in one TransferEntries: what the entries of every person
    whose decision shares these values have in common. Get it with `TransferEntries.shape`
    and hand it to `TransferEntries.record_shaped`; its fields are internal."""

    owner: object  # the TransferEntries' token: a shape is only good for its own transfer
    decision: Decision  # one decision of the shape (its subject id and evidence values unused)
    parts: tuple[Any, ...]  # _SHARED(decision.__dict__)
    reasons: _Reasons | None  # the `reasons` override, frozen
    evidence_keys: tuple[str, ...]  # in the order the template takes their values
    evidence: Callable[[Mapping[str, str]], tuple[str, ...]]  # the values at evidence_keys
    pieces: list[str]  # the canonical JSON cut at the values' places (see _leaf), quotes kept
    pieces_null: list[str]  # the same with the payload hash's quotes gone: for a null
    order: _Order | None  # (id, *evidence, payload, subject id, key) to text order; None: same
    purpose: str
    legal_basis: str
    outcome: str


class TransferEntries:
    """Builds the provision entries of one transfer (one outcome, one time) as LeafRecords.

    Equivalent to `to_record(provision_entry(...))` for each decision, byte for byte, at a
    fraction of the cost once a decision shape has been seen. `record` takes any decision;
    `shape` + `record_shaped` let a bulk caller that knows which people share a decision
    shape skip building a Decision per person.
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
    ) -> None:
        self._contract = contract
        self._partner_id = contract.id
        self._outcome = outcome
        self._transfer_id = transfer_id
        self._time = time
        self._method = method
        self._new_id = new_id
        self._retain_until = retain_until(time, method)
        self._token = object()
        self._shapes: dict[_ShapeKey, EntryShape] = {}
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
        key = (parts, frozen_reasons, frozenset(decision.evidence))
        shape = self._shapes.get(key)
        if shape is None:
            shape = self._shapes[key] = self._build_shape(decision, parts, reasons, frozen_reasons)
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
        shape of another TransferEntries; CanonicalizationError for a lone surrogate."""
        if shape.owner is not self._token:
            raise ValueError("the shape belongs to another TransferEntries")
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
        values: Sequence[str] = _quoted((eid, *evidence, payload, subject_id, subject_key))
        if shape.order is not None:
            values = shape.order(values)
        leaf, leaf_hash = _leaf(pieces, values)
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
        markers = _Markers()
        # Markers in the order _record lists the values, which is their order in the text
        # when the evidence keys are in RFC 8785 order (by UTF-16 code units, §3.2.3).
        entry_id = markers.new()
        evidence_keys = tuple(sorted(decision.evidence, key=lambda k: k.encode("utf-16-be")))
        evidence = {k: markers.new() for k in evidence_keys}
        payload = markers.new()  # a string or null: one template with its quotes, one without
        subject_id = markers.new()
        entry = provision_entry(
            decision=decision.model_copy(update={"evidence": evidence, "subject_id": subject_id}),
            contract=self._contract,
            outcome=self._outcome,
            transfer_id=self._transfer_id,
            entry_id=entry_id,
            time=self._time,
            subject_key=markers.new(),
            payload_sha256=payload,
            reasons=reasons,
            method=self._method,
        )
        pieces, order = markers.compile(entry)
        pieces_null, _ = markers.compile(entry, raw={payload})
        return EntryShape(
            owner=self._token,
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
        markers = _Markers()
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
        self._time = time
        self._partner_id = contract.id
        self._purpose = purpose
        self._legal_basis = legal_basis or ""
        self._outcome = outcome.value
        self._retain_until = retain_until(time, RecordingMethod.SINGLE)

    def record(
        self, *, subject_id: str, subject_key: str, payload_sha256: str | None, refers_to: int
    ) -> LeafRecord:
        """Raises CanonicalizationError for a lone surrogate; ValueError for refers_to < 0."""
        if refers_to < 0:
            raise ValueError("refers_to must be a log index")
        eid = self._new_id()
        if payload_sha256 is None:
            pieces, payload = self._pieces_null, "null"
        else:
            pieces, payload = self._pieces, payload_sha256
        values: Sequence[str] = _quoted((eid, payload, str(refers_to), subject_id, subject_key))
        if self._order is not None:
            values = self._order(values)
        leaf, leaf_hash = _leaf(pieces, values)
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


class _Markers:
    """Unique marker strings standing where a template's values go."""

    def __init__(self) -> None:
        self._token = secrets.token_hex(8)
        self._markers: list[str] = []

    def new(self) -> str:
        self._markers.append(f"\x00slot{len(self._markers)}-{self._token}\x00")
        return self._markers[-1]

    def compile(
        self, entry: Mapping[str, Any], raw: Collection[str] = ()
    ) -> tuple[list[str], _Order | None]:
        """The entry's canonical JSON cut at each marker: its segments with "" between each
        two where a value goes (see _leaf); and the function putting values listed by marker
        number into text order, None when that is their order already. A string's quotes
        stay in the segments (see _quoted), the markers in `raw` lose theirs: the value that
        goes there is JSON text of its own (a number, null)."""
        text = canonicalize(dict(entry)).decode("utf-8")
        cuts = []
        for marker in self._markers:
            quoted = canonicalize(marker).decode("utf-8")
            cuts.append(quoted if marker in raw else quoted[1:-1])
        segments, order = _split(text, cuts)
        pieces = [segments[0]]
        for segment in segments[1:]:
            pieces += ["", segment]
        if order == tuple(range(len(order))):
            return pieces, None
        return pieces, itemgetter(*order) if len(order) > 1 else (lambda v: (v[order[0]],))


def _split(text: str, encoded: Sequence[str]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """`text` cut at each marker (each must occur exactly once), and the markers' indexes in
    the order they occur. Raises AssertionError when a marker is missing or repeated."""
    for marker in encoded:
        assert text.count(marker) == 1, "a slot marker is missing or occurs twice"
    found = sorted((text.index(marker), index) for index, marker in enumerate(encoded))
    segments = []
    start = 0
    for position, index in found:
        segments.append(text[start:position])
        start = position + len(encoded[index])
    segments.append(text[start:])
    return tuple(segments), tuple(index for _, index in found)
