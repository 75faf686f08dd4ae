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
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from hashlib import sha256
from json.encoder import encode_basestring
from operator import itemgetter
from os import urandom
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

__all__ = ["OutcomeEntries", "TransferEntries", "random_uuid"]

_LEAF_PREFIX: Final = b"\x00"  # RFC 9162 §2.1.1: a leaf hash is SHA-256(0x00 || leaf)
_ShapeKey: TypeAlias = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Template:
    text: str  # the shape's canonical JSON, `%` doubled, `%s` where each value goes
    order: Callable[[Sequence[str]], tuple[str, ...]]  # `record`'s values in text order
    evidence_keys: tuple[str, ...]
    legal_basis: str
    outcome: str


def random_uuid() -> str:
    """A random (version 4) UUID, RFC 9562 §5.4: the stdlib's uuid4() costs three times as much
    (a UUID object per call), which shows when a million entries are built."""
    raw = bytearray(urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # variant 10
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class TransferEntries:
    """Builds the provision entries of one transfer (one outcome, one time) as LeafRecords.

    Equivalent to `to_record(provision_entry(...))` for each decision, byte for byte, at a
    fraction of the cost once a decision shape has been seen.
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
        self._templates: dict[_ShapeKey, _Template] = {}

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
        frozen_reasons = None if reasons is None else tuple(tuple(r.items()) for r in reasons)
        key = (
            decision.purpose,
            decision.allowed,
            decision.legal_basis,
            decision.cross_border_basis,
            decision.data_category,
            decision.reasons,
            decision.rule_ids,
            decision.fields_sent,
            decision.fields_dropped,
            tuple(decision.evidence),
            payload_sha256 is None,
            frozen_reasons,
        )
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = self._template(decision, reasons, payload_sha256)
        eid = entry_id if entry_id is not None else self._new_id()
        values = [eid, *(decision.evidence[k] for k in template.evidence_keys)]
        values += [decision.subject_id, subject_key]
        if payload_sha256 is not None:
            values.append(payload_sha256)
        try:
            leaf = (template.text % template.order(tuple(map(encode_basestring, values)))).encode()
        except UnicodeEncodeError as exc:  # RFC 8785 §3.2.2.2: lone surrogates are refused
            raise CanonicalizationError("string holds a lone surrogate") from exc
        return LeafRecord(
            leaf=leaf,
            leaf_hash=sha256(_LEAF_PREFIX + leaf).digest(),
            entry_id=eid,
            transfer_id=self._transfer_id,
            time=self._time,
            subject_id=decision.subject_id,
            partner_id=self._partner_id,
            purpose=decision.purpose,
            legal_basis=template.legal_basis,
            outcome=template.outcome,
            retain_until=self._retain_until,
        )

    def _template(
        self,
        decision: Decision,
        reasons: Sequence[Mapping[str, str]] | None,
        payload_sha256: str | None,
    ) -> _Template:
        """Canonicalize the shape with a unique marker at each varying value, then split."""
        markers = _Markers()
        # Created in the order `record` lists the values: entry id, evidence, subject, hash.
        entry_marker = markers.new()
        evidence_keys = tuple(decision.evidence)
        evidence = {k: markers.new() for k in evidence_keys}
        shaped = decision.model_copy(update={"evidence": evidence, "subject_id": markers.new()})
        entry = provision_entry(
            decision=shaped,
            contract=self._contract,
            outcome=self._outcome,
            transfer_id=self._transfer_id,
            entry_id=entry_marker,
            time=self._time,
            subject_key=markers.new(),
            payload_sha256=None if payload_sha256 is None else markers.new(),
            reasons=reasons,
            method=self._method,
        )
        text, order = markers.compile(entry)
        return _Template(
            text=text,
            order=order,
            evidence_keys=evidence_keys,
            legal_basis=decision.legal_basis.value,
            outcome=self._outcome.value,
        )


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
        entry = outcome_entry(
            contract=contract,
            purpose=purpose,
            legal_basis=legal_basis,
            outcome=outcome,
            operation=operation,
            transfer_id=transfer_id,
            delivery_id=delivery_id,
            entry_id=markers.new(),
            time=time,
            subject_id=markers.new(),
            subject_key=markers.new(),
            payload_sha256=markers.new(),
            refers_to=0,
            reasons=reasons,
        )
        entry["refers_to"] = markers.new()  # an integer: written raw, not as a JSON string
        self._text, self._order = markers.compile(entry)
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
        sha = "null" if payload_sha256 is None else encode_basestring(payload_sha256)
        values = (
            encode_basestring(eid),
            encode_basestring(subject_id),
            encode_basestring(subject_key),
            sha,
            str(refers_to),
        )
        leaf = _encode(self._text % self._order(values))
        return LeafRecord(
            leaf=leaf,
            leaf_hash=sha256(_LEAF_PREFIX + leaf).digest(),
            entry_id=eid,
            transfer_id=self._transfer_id,
            time=self._time,
            subject_id=subject_id,
            partner_id=self._partner_id,
            purpose=self._purpose,
            legal_basis=self._legal_basis,
            outcome=self._outcome,
            retain_until=self._retain_until,
        )


def _encode(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError as exc:  # RFC 8785 §3.2.2.2: lone surrogates are refused
        raise CanonicalizationError("string holds a lone surrogate") from exc


class _Markers:
    """Unique marker strings standing where a template's values go."""

    def __init__(self) -> None:
        self._token = secrets.token_hex(8)
        self._markers: list[str] = []

    def new(self) -> str:
        self._markers.append(f"\x00slot{len(self._markers)}-{self._token}\x00")
        return self._markers[-1]

    def compile(
        self, entry: Mapping[str, Any]
    ) -> tuple[str, Callable[[Sequence[str]], tuple[str, ...]]]:
        """The entry's canonical JSON as a %-template in which each marker, quotes included,
        became `%s`, and the function putting values (by marker number) into text order.
        Values go in as canonical JSON text: a string encoded, a number or null raw."""
        text = canonicalize(dict(entry)).decode("utf-8")
        encoded = [canonicalize(m).decode("utf-8") for m in self._markers]
        segments, order = _split(text, encoded)
        template = "%s".join(segment.replace("%", "%%") for segment in segments)
        picker = itemgetter(*order) if len(order) > 1 else (lambda v: (v[order[0]],))
        return template, picker


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
