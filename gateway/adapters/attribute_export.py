"""Attribute-estimation export: the recipient's designated file, and the summary it returns.

The file is delimited text per RFC 4180 (§2): one record per line, lines ending as the
contract's `line_ending` says, a field quoted when it holds the delimiter, a double quote, CR
or LF, and a double quote inside a quoted field doubled. It is written in the contract's
`encoding`; a value with no exact form in it (an emoji in Shift_JIS, or "¥" that Shift_JIS
would turn into "\\") raises `UnencodableValue` naming the column, so the caller rejects that
record and goes on: `encode_row` per record, `header_bytes` once.

What comes back must be a statistical summary only (requirements, "The three provisions"):
`check_summary` refuses anything that could single out a person (`SummaryRefused`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from pydantic import Field

from gateway.adapters import SummaryRefused, UnencodableValue
from gateway.contract_kinds import (
    PER_PERSON_NAMES,
    ExportEncoding,
    ExportFormat,
    LineEnding,
    names_one_person,
)
from gateway.models import Frozen

# IANA charset names (RFC 2978 registry) for the Content-Type.
IANA_CHARSETS = {
    ExportEncoding.UTF_8: "UTF-8",
    ExportEncoding.SHIFT_JIS: "Shift_JIS",
    ExportEncoding.CP932: "Windows-31J",
}
NEWLINES = {LineEnding.CRLF: "\r\n", LineEnding.LF: "\n"}
# The delimiter a media type implies; another one is named in a `delimiter` parameter.
MEDIA_DELIMITERS = {"text/csv": ",", "text/tab-separated-values": "\t"}
# Characters Python's codecs encode without error but decode to another character (¥ -> \,
# 〜 WAVE DASH -> ～ FULLWIDTH TILDE): the recipient would read a different value. The unit
# tests recompute these over all of Unicode.
LOSSY = {
    ExportEncoding.UTF_8: frozenset(),
    ExportEncoding.SHIFT_JIS: frozenset("\u00a5\u203e"),
    ExportEncoding.CP932: frozenset("\u00a2\u00a3\u00ac\u2016\u2212\u301c"),
}


def content_type(fmt: ExportFormat) -> str:
    """The file's Content-Type: `text/csv; charset=Shift_JIS`, and `delimiter=` when the
    delimiter is not the one the media type implies (tab is written `tab`)."""
    out = f"{fmt.media_type}; charset={IANA_CHARSETS[fmt.encoding]}"
    if fmt.delimiter == MEDIA_DELIMITERS.get(fmt.media_type.lower(), ","):
        return out
    if fmt.delimiter == "\t":
        return out + "; delimiter=tab"
    return out + '; delimiter="' + fmt.delimiter.replace("\\", "\\\\") + '"'  # RFC 2045 §5.1


def _field(value: str, delimiter: str) -> str:
    # RFC 4180 §2 (6), (7). Python 3.11's csv writer leaves a CR unquoted under an LF line
    # ending, which a reader then splits: so the rule is applied here, for every ending.
    if delimiter in value or '"' in value or "\r" in value or "\n" in value:
        return '"' + value.replace('"', '""') + '"'
    return value


def _line(cells: list[str], fmt: ExportFormat) -> str:
    if cells == [""]:
        return '""' + NEWLINES[fmt.line_ending]  # one empty field, not a blank line
    delimiter = fmt.delimiter
    return delimiter.join([_field(c, delimiter) for c in cells]) + NEWLINES[fmt.line_ending]


def _encode(cells: list[str], fmt: ExportFormat) -> bytes:
    line = _line(cells, fmt)
    codec = fmt.encoding
    try:
        data = line.encode(codec.value)
    except UnicodeEncodeError:
        raise UnencodableValue(_culprit(cells, fmt), IANA_CHARSETS[codec]) from None
    if not line.isascii() and not LOSSY[codec].isdisjoint(line):
        raise UnencodableValue(_culprit(cells, fmt), IANA_CHARSETS[codec])
    return data


def _culprit(cells: list[str], fmt: ExportFormat) -> str:
    """The first column whose value has no exact form in the encoding."""
    lossy = LOSSY[fmt.encoding]
    for column, value in zip(fmt.columns, cells, strict=True):
        try:
            value.encode(fmt.encoding.value)
        except UnicodeEncodeError:
            return column
        if not lossy.isdisjoint(value):
            return column
    raise AssertionError("a line that fails to encode has a value that fails")


def header_bytes(fmt: ExportFormat) -> bytes:
    """The header record: the column names, encoded (they are ASCII)."""
    return _encode(list(fmt.columns), fmt)


def encode_row(values: Mapping[str, str | None], fmt: ExportFormat) -> bytes:
    """One record: the values of `fmt.columns`, in order; a missing or None value is an empty
    field; keys that are not columns are not written.

    Raises UnencodableValue (naming the column, never the value).
    """
    return _encode([values.get(column) or "" for column in fmt.columns], fmt)


def render_rows(rows: Iterable[Mapping[str, str | None]], fmt: ExportFormat) -> Iterator[bytes]:
    """The whole file in pieces: the header (if `fmt.header`), then one piece per row.

    Raises UnencodableValue at the first row that cannot be written, ending the file there:
    a caller that goes on past such records uses `encode_row` itself.
    """
    if fmt.header:
        yield header_bytes(fmt)
    for row in rows:
        yield encode_row(row, fmt)


# --- the summary that comes back


class Cell(Frozen):
    values: dict[str, str]  # dimension -> value
    count: int


class Summary(Frozen):
    """A statistical summary that passed `check_summary`."""

    upload_id: str
    dimensions: tuple[str, ...]
    cells: tuple[Cell, ...] = Field(min_length=1)


Problem = tuple[str, str]  # (RFC 6901 JSON pointer, detail)

# A statistical table is a few dimensions of a few values each: 47 prefectures x 10 age bands
# x 3 genders x 7 more is ~10,000. A larger one is no longer a summary to review (at the
# minimum count of 10 it describes 100,000 people cell by cell), and checking it would hold
# the event loop (~20 us a cell): refused, pointing at /cells, before any cell is read.
MAX_CELLS: Final = 10_000
MAX_DIMENSIONS: Final = 16
_TOP_KEYS = ("upload_id", "dimensions", "cells")
_CELL_KEYS = ("values", "count")
_SCHEMA_KEYS = frozenset(_TOP_KEYS + _CELL_KEYS)
_NO_OTHER: Final = "a summary holds no other key"
_MISSING: Final[Any] = object()  # a key not in the body (null is a value: never a valid one)
_DIMENSION = re.compile(r"[a-z][a-z0-9_]{0,62}").fullmatch
_LONG_HEX = re.compile(r"[0-9a-fA-F]{32,}").fullmatch  # SHA-256, HMAC, MD5 ... digests
_KEYED = re.compile(r"[^\s:]{1,64}:[0-9a-fA-F]{32,}").fullmatch  # "<key id>:<hex>" subject keys
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+").fullmatch
_PHONE = re.compile(r"\+?[0-9]{10,15}").fullmatch  # after removing " -()"
_PHONE_SEPARATORS = str.maketrans("", "", " -()")


def looks_per_person(value: str) -> bool:
    """True for a value shaped like one person's key: a long hex digest, a `kid:hex` subject
    key, an email address, or a phone number (10-15 digits)."""
    text = value.strip()
    return bool(
        _LONG_HEX(text) or _KEYED(text) or _EMAIL(text) or _PHONE(text.translate(_PHONE_SEPARATORS))
    )


@dataclass(frozen=True)
class _Names:
    """The names a problem may quote: the schema's keys, the gateway's own per-person field
    names (`barred`), and the summary's valid dimensions (`declared`; None when the dimension
    list is unusable). Any other key is the caller's text (a name, an email) and is only
    counted (`_unknown_keys`)."""

    barred: frozenset[str]
    declared: frozenset[str] | None

    def quotable(self, key: str) -> bool:
        return key in _SCHEMA_KEYS or key in self.barred or key in (self.declared or ())


def check_summary(
    body: object,
    min_cell_count: int,
    identifier_fields: Collection[str],
    allowed_dimensions: Collection[str] | None = None,
) -> Summary:
    """`body` (parsed JSON) as a Summary, if it is a statistical summary and nothing more.

    Refused, every problem listed: a key other than upload_id/dimensions/cells at the top or
    values/count in a cell (a per-person list such as "members" rides in on one); null for any
    of them; an upload_id that is not a short printable string or looks per person; more than
    MAX_DIMENSIONS dimensions, or one that is not a lowercase name, repeats, names an
    identifier (PER_PERSON_NAMES, `identifier_fields`, any *_sha256), looks per person or is
    not among `allowed_dimensions` (the contract's `[statistics] dimensions`, if any); more
    than MAX_CELLS cells; cell values whose keys are not exactly the dimensions or that are
    not strings or look per person (`looks_per_person`); a count that is not an integer or is
    below `min_cell_count` (0 included); two cells with the same values; no cell.

    Raises SummaryRefused with (JSON pointer, detail) pairs that never quote a value, and
    quote a key only if the schema, the gateway or the summary's dimensions declare it (any
    other key is counted, not named: it may be a person's name or email).
    """
    if not isinstance(body, dict):
        raise SummaryRefused([("", "must be a JSON object")])
    barred = PER_PERSON_NAMES | frozenset(identifier_fields)
    problems: list[Problem] = [(f"/{key}", "required") for key in _TOP_KEYS if key not in body]
    upload_id = _upload_id(body.get("upload_id", _MISSING), problems)
    dimensions, declared = _dimensions(
        body.get("dimensions", _MISSING), barred, allowed_dimensions, problems
    )
    names = _Names(barred, declared)
    problems[:0] = _unknown_keys("", body, _TOP_KEYS, names, _NO_OTHER)
    minimum = max(min_cell_count, 1)
    cells = _cells(body.get("cells", _MISSING), dimensions, names, minimum, problems)
    if problems or upload_id is None or dimensions is None or not cells:
        # Each None above comes with its problem; the fallback keeps this total.
        raise SummaryRefused(problems or [("", "is not a summary")])
    return Summary(upload_id=upload_id, dimensions=dimensions, cells=tuple(cells))


def _upload_id(raw: object, problems: list[Problem]) -> str | None:
    if raw is _MISSING:
        return None
    if not (isinstance(raw, str) and 0 < len(raw) <= 128 and raw.isprintable()):
        problems.append(("/upload_id", "must be a printable string of 1 to 128 characters"))
        return None
    if looks_per_person(raw):  # it is logged with an accepted summary
        problems.append(("/upload_id", "looks like one person's identifier"))
        return None
    return raw


def _pointer(parent: str, key: str | int) -> str:
    """RFC 6901 §3: "~" is written "~0" and "/" is "~1" in a reference token."""
    return f"{parent}/{str(key).replace('~', '~0').replace('/', '~1')}"


def _unknown_keys(
    parent: str, obj: dict[str, Any], allowed: Collection[str], names: _Names, detail: str
) -> list[Problem]:
    """A problem per key outside `allowed` that `names` may quote, one counting the rest."""
    problems: list[Problem] = []
    withheld = 0
    for key in obj:
        if key in allowed:
            continue
        if names.quotable(key):
            problems.append((_pointer(parent, key), detail))
        else:
            withheld += 1
    if withheld:
        # Counted, not named: the key is the caller's text, maybe a person's name or email.
        problems.append((parent, f"{withheld} undeclared key(s), not named: {detail}"))
    return problems


def _dimensions(
    raw: object,
    barred: frozenset[str],
    allowed: Collection[str] | None,
    problems: list[Problem],
) -> tuple[tuple[str, ...] | None, frozenset[str] | None]:
    """(the dimensions if all are valid, the valid ones; None when the list is unusable).
    `allowed`: the only names the contract lets a summary use (None: any valid name)."""
    if raw is _MISSING:
        return None, None
    if not isinstance(raw, list) or len(raw) > MAX_DIMENSIONS:
        problems.append(("/dimensions", f"must be a list of at most {MAX_DIMENSIONS} names"))
        return None, None
    seen: dict[str, int] = {}
    for index, name in enumerate(raw):
        where = f"/dimensions/{index}"
        if not isinstance(name, str) or not _DIMENSION(name):
            problems.append((where, "must be a lowercase name like age_band"))
        elif names_one_person(name, barred):
            problems.append((where, "names an identifier of one person: not a dimension"))
        elif looks_per_person(name):
            problems.append((where, "looks like one person's identifier"))
        elif allowed is not None and name not in allowed:
            problems.append((where, "is not among the dimensions the contract allows"))
        elif name in seen:
            problems.append((where, f"repeats /dimensions/{seen[name]}"))
        else:
            seen[name] = index
    declared = frozenset(seen)
    return (tuple(raw) if len(seen) == len(raw) else None), declared


def _cells(
    raw: object,
    dimensions: tuple[str, ...] | None,
    names: _Names,
    minimum: int,
    problems: list[Problem],
) -> list[Cell]:
    if raw is _MISSING:
        return []
    if not isinstance(raw, list) or not raw:
        problems.append(("/cells", "must be a non-empty list of cells"))
        return []
    if len(raw) > MAX_CELLS:
        problems.append(("/cells", f"at most {MAX_CELLS} cells in a summary, not {len(raw)}"))
        return []
    cells: list[Cell] = []
    first_at: dict[tuple[str, ...], int] = {}
    for index, cell in enumerate(raw):
        where = f"/cells/{index}"
        if not isinstance(cell, dict):
            problems.append((where, "must be an object with values and count"))
            continue
        before = len(problems)
        problems += _unknown_keys(where, cell, _CELL_KEYS, names, _NO_OTHER)
        problems += [(f"{where}/{key}", "required") for key in _CELL_KEYS if key not in cell]
        count = _count(cell.get("count", _MISSING), f"{where}/count", minimum, problems)
        values = _values(
            cell.get("values", _MISSING), dimensions, names, f"{where}/values", problems
        )
        if len(problems) > before or values is None or count is None or dimensions is None:
            continue
        key = tuple(values[d] for d in dimensions)
        if key in first_at:
            problems.append((where, f"repeats the values of /cells/{first_at[key]}"))
            continue
        first_at[key] = index
        cells.append(Cell(values=values, count=count))
    return cells


def _count(raw: object, where: str, minimum: int, problems: list[Problem]) -> int | None:
    if raw is _MISSING:
        return None
    # bool is an int in Python, not a count in JSON; null is no count.
    if type(raw) is not int:
        problems.append((where, "must be an integer"))
        return None
    if raw < minimum:
        # A cell this small can single a person out (the contract's [statistics]).
        problems.append((where, f"below the minimum cell count {minimum}"))
        return None
    return raw


def _values(
    raw: object,
    dimensions: tuple[str, ...] | None,
    names: _Names,
    where: str,
    problems: list[Problem],
) -> dict[str, str] | None:
    """The cell's values if they are exactly the dimensions, each a string that keys no one.
    With no usable dimension list, no key can be judged: only the object is checked."""
    if raw is _MISSING:
        return None
    if not isinstance(raw, dict):
        problems.append((where, "must be an object of dimension -> value"))
        return None
    if names.declared is None:
        return None
    before = len(problems)
    problems += _unknown_keys(where, raw, names.declared, names, "not one of the dimensions")
    if dimensions is not None:
        problems += [(_pointer(where, d), "missing dimension") for d in dimensions if d not in raw]
    for key, value in raw.items():
        if key not in names.declared:
            continue  # reported above
        if not isinstance(value, str):
            problems.append((_pointer(where, key), "must be a string"))
        elif looks_per_person(value):
            problems.append((_pointer(where, key), "looks like one person's identifier"))
    return dict(raw) if len(problems) == before and dimensions is not None else None
