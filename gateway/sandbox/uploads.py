"""The point-program recipient's side of an attribute-estimation upload, pure: read the
delimited file, count people per (age band, gender), and write the statistical summary.

Media type: `text/csv` (RFC 4180 / RFC 7111) or `text/tab-separated-values`, with a `charset`
parameter (default UTF-8; a UTF-8 BOM is skipped) and an optional `delimiter` parameter (one
character, or `tab`; default `,` for CSV and a tab for TSV). IANA charset names are mapped to
Python codecs (Shift_JIS -> shift_jis, Windows-31J -> cp932). The first line is the header;
blank lines are skipped. Only `birth_year`, `gender` and `member_id` are read.

Summary (what the recipient posts back; `cells` in a stable order):

    {"upload_id": "up_...", "dimensions": ["age_band", "gender"],
     "cells": [{"values": {"age_band": "30-39", "gender": "f"}, "count": 12}, ...]}

`age_band` is the decade of the age in 2026 ("30-39"), "unknown" when birth_year is missing or
not a plausible year; `gender` is the lowercased value, "unknown" when empty. Summary modes:
"ok" drops every cell counting fewer than `min_cell_count` people (the suppression rule of the
partner contract's [statistics]); "small_cells" keeps them all and makes sure one cell counts 1;
"per_person" adds `members`, per-person rows the gateway must refuse.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import Any

REFERENCE_YEAR = 2026
MAX_AGE = 120
PER_PERSON_SAMPLE = 100  # rows the "per_person" mode lists: enough to be plainly per person
DIMENSIONS = ("age_band", "gender")
UNKNOWN = "unknown"
MEDIA_DELIMITERS = {"text/csv": ",", "text/tab-separated-values": "\t"}
_CHARSET_CODECS = {
    "utf-8": "utf-8-sig",  # skip a BOM: spreadsheet exports often start with one
    "utf8": "utf-8-sig",
    "shift_jis": "shift_jis",
    "windows-31j": "cp932",  # IANA name of Microsoft's Shift_JIS; Python calls it cp932
    "cp932": "cp932",
}
_DELIMITER_WORDS = {"tab": "\t", "\\t": "\t", "%09": "\t"}
_SMALL_CELL_CANDIDATES = (
    (UNKNOWN, UNKNOWN),
    (UNKNOWN, "other"),
    (UNKNOWN, "sandbox-small-cell"),
)


class UploadRejected(ValueError):
    """The upload cannot be read; `status` is the HTTP status to answer (400 or 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class MediaType:
    media: str
    codec: str  # a Python codec name
    delimiter: str


@dataclass
class ParsedUpload:
    rows: int = 0
    cells: Counter[tuple[str, str]] = field(default_factory=Counter)
    sample: list[dict[str, str]] = field(default_factory=list)  # first rows, for per_person


def parse_media_type(header: str) -> MediaType:
    """The codec and delimiter a Content-Type names. Raises UploadRejected (415 for a media
    type or charset this recipient does not take, 400 for a bad delimiter)."""
    message = Message()
    message["Content-Type"] = header or "application/octet-stream"
    media = message.get_content_type()
    if media not in MEDIA_DELIMITERS:
        raise UploadRejected(415, "send text/csv or text/tab-separated-values")
    charset = _param(message, "charset") or "utf-8"
    codec = _CHARSET_CODECS.get(charset.lower())
    if codec is None:
        try:
            codec = codecs.lookup(charset).name
        except LookupError:
            raise UploadRejected(415, "unknown charset") from None
    raw = _param(message, "delimiter")
    delimiter = MEDIA_DELIMITERS[media] if raw is None else _DELIMITER_WORDS.get(raw.lower(), raw)
    if len(delimiter) != 1 or delimiter in '\r\n"':
        raise UploadRejected(400, "the delimiter parameter must be one character")
    return MediaType(media=media, codec=codec, delimiter=delimiter)


def _param(message: Message, name: str) -> str | None:
    value = message.get_param(name)
    if value is None:
        return None
    return collapse_rfc2231_value(value) if isinstance(value, tuple) else str(value)


def parse_upload(body: bytes, media: MediaType) -> ParsedUpload:
    """Count the file's data rows per cell. Raises UploadRejected (400) when the bytes are not
    in the declared charset, the file has no header, or it is not delimited text."""
    text = io.TextIOWrapper(io.BytesIO(body), encoding=media.codec, newline="")
    try:
        reader = csv.reader(text, delimiter=media.delimiter)
        header = next(reader, None)
        if not header or not any(header):
            raise UploadRejected(400, "the file has no header row")
        return _count_rows(reader, [name.strip() for name in header])
    except UnicodeDecodeError:
        raise UploadRejected(400, f"the body is not valid {media.codec}") from None
    except csv.Error as exc:
        raise UploadRejected(400, f"the file is not delimited text: {exc}") from None


def _count_rows(reader: Any, header: list[str]) -> ParsedUpload:
    year_at = header.index("birth_year") if "birth_year" in header else None
    gender_at = header.index("gender") if "gender" in header else None
    member_at = header.index("member_id") if "member_id" in header else None
    parsed = ParsedUpload()
    for row in reader:
        if not row or row == [""]:
            continue
        band = age_band(_cell(row, year_at))
        gender = _cell(row, gender_at).strip().lower() or UNKNOWN
        parsed.cells[band, gender] += 1
        parsed.rows += 1
        if len(parsed.sample) < PER_PERSON_SAMPLE:
            member = _cell(row, member_at) or f"row-{parsed.rows}"
            parsed.sample.append({"member_id": member, "age_band": band, "gender": gender})
    return parsed


def _cell(row: list[str], at: int | None) -> str:
    return row[at] if at is not None and at < len(row) else ""


def age_band(birth_year: str) -> str:
    """The age decade in REFERENCE_YEAR ("30-39"), or "unknown" for a missing or bad year."""
    raw = birth_year.strip()
    if not (raw.isascii() and raw.isdigit()):
        return UNKNOWN
    age = REFERENCE_YEAR - int(raw)
    if not 0 <= age <= MAX_AGE:
        return UNKNOWN
    low = age // 10 * 10
    return f"{low}-{low + 9}"


def build_summary(
    upload_id: str, parsed: ParsedUpload, *, mode: str, min_cell_count: int
) -> dict[str, Any]:
    """The summary the recipient posts in `mode` ("ok", "small_cells" or "per_person")."""
    cells = sorted(parsed.cells.items())
    if mode != "small_cells":
        cells = [(values, n) for values, n in cells if n >= min_cell_count]
    elif all(n >= min_cell_count for _, n in cells):
        present = {values for values, _ in cells}
        extra = next(c for c in _SMALL_CELL_CANDIDATES if c not in present)
        cells.append((extra, 1))
    summary: dict[str, Any] = {
        "upload_id": upload_id,
        "dimensions": list(DIMENSIONS),
        "cells": [
            {"values": dict(zip(DIMENSIONS, values, strict=True)), "count": n}
            for values, n in cells
        ],
    }
    if mode == "per_person":
        summary["members"] = list(parsed.sample)
    return summary
