"""RFC 8785 templates of log entries: canonical JSON cut where the per-person values go.

An entry's canonical bytes are the canonical bytes of its shared part with each varying
value's own canonical form spliced in at its place (RFC 8785 orders members by key alone,
§3.2.3, and writes each value independently of its neighbours). `Markers` canonicalizes an
entry once with a unique marker at each varying place and cuts the text there; `fill_leaf`
puts values in and hashes the leaf. Used by gateway/ledger/templates.py.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Collection, Mapping, Sequence
from hashlib import sha256
from json.encoder import encode_basestring
from operator import itemgetter
from typing import Any, Final, TypeAlias

from gateway.ledger.canonical import CanonicalizationError, canonicalize

__all__ = ["Markers", "Order", "fill_leaf", "fill_template", "quoted"]

Order: TypeAlias = Callable[[Sequence[str]], tuple[str, ...]]
"""Puts values listed by marker number into the order their places have in the text."""
_LEAF_HASH: Final = sha256(b"\x00")  # RFC 9162 §2.1.1: a leaf hash is SHA-256(0x00 || leaf)
_string: Final = encode_basestring  # a str as a JSON string, escaped as RFC 8785 §3.2.2.2 does
# What RFC 8785 writes as it is inside a JSON string, of ASCII: all but `"`, `\` and controls.
_PLAIN: Final = bytes(c for c in range(0x20, 0x80) if c not in b'"\\')


def quoted(values: tuple[str, ...]) -> tuple[str, ...]:
    """`values` as they go between the quotes a template has around each string's place:
    escaped as RFC 8785 §3.2.2.2 escapes strings (the C JSON encoder's escaping). Mostly
    there is nothing to escape, which one check of all of them at once finds."""
    plain = "".join(values)
    if plain.isascii() and not plain.encode().translate(None, _PLAIN):
        return values
    return tuple(_string(value)[1:-1] for value in values)


def fill_leaf(pieces: list[str], values: Sequence[str]) -> tuple[bytes, bytes]:
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


def fill_template(
    pieces: list[str], order: Order | None, values: tuple[str, ...]
) -> tuple[bytes, bytes]:
    """`fill_leaf` with `values` listed by marker number and not yet escaped (see Markers):
    escaped, put in text order, filled in. Raises CanonicalizationError for a lone
    surrogate."""
    escaped = quoted(values)
    return fill_leaf(pieces, escaped if order is None else order(escaped))


class Markers:
    """Unique marker strings standing where a template's values go."""

    def __init__(self) -> None:
        self._token = secrets.token_hex(8)
        self._markers: list[str] = []

    def new(self) -> str:
        self._markers.append(f"\x00slot{len(self._markers)}-{self._token}\x00")
        return self._markers[-1]

    def compile(
        self, entry: Mapping[str, Any], raw: Collection[str] = ()
    ) -> tuple[list[str], Order | None]:
        """The entry's canonical JSON cut at each marker: its segments with "" between each
        two where a value goes (see fill_leaf); and the function putting values listed by marker
        number into text order, None when that is their order already. A string's quotes
        stay in the segments (see quoted), the markers in `raw` lose theirs: the value that
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
