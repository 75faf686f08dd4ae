"""Reading a provision's records from a streamed body: JSONL or CSV, one record per line.

Each record comes out with its 1-based line number (the CSV header is line 0, not a record),
as a dict of strings, or as a short error text when the line cannot be read: a broken line is
reported against its number and the upload goes on (nothing is dropped silently). Memory is
bounded by one line (gateway.consent_import.LineSplitter, MAX_LINE_BYTES), which also drops a
UTF-8 byte order mark before the first line, as spreadsheet programs write exported CSV.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from time import perf_counter
from typing import Literal

from gateway.consent import SUBJECT_ID_PATTERN
from gateway.consent_import import MAX_LINE_BYTES, LineSplitter, csv_cells, has_duplicate_keys
from gateway.cooperative import SLICE_S, yield_loop
from gateway.delivery.outbox import Rejection
from gateway.errors import FieldError, ValidationFailed, shown_name

__all__ = ["read_records", "subject_record"]

Line = tuple[int, "dict[str, object] | str"]


async def read_records(
    chunks: AsyncIterable[bytes],
    fmt: Literal["jsonl", "csv"],
    *,
    columns: frozenset[str],
    pause: Callable[[], Awaitable[None]] = yield_loop,
) -> AsyncIterator[Line]:
    """Records of the body, in order. Raises ValidationFailed for a CSV header that names a
    column outside `columns`, names one twice or lacks subject_id, and for a body with no
    record at all (the upload cannot be understood, or holds nothing: as `records: []`).
    Awaits `pause` (Priority.pause, say) once each SLICE_S of reading and of what the caller
    does between two records: a body that arrives at once must not hold the loop."""
    splitter = LineSplitter()
    header: list[str] | None = None
    number = 0
    found = False
    deadline = perf_counter() + SLICE_S
    async for chunk in chunks:
        for raw in splitter.feed(chunk):
            if perf_counter() >= deadline:
                await pause()
                deadline = perf_counter() + SLICE_S
            if fmt == "csv" and header is None:
                header = _header(raw, columns)
                continue
            number += 1
            if raw is not None and not raw.strip():
                continue  # a blank line is no record (a trailing newline, say)
            found = True
            yield number, _record(raw, header)
    for raw in splitter.finish():
        if fmt == "csv" and header is None:
            header = _header(raw, columns)
            continue
        number += 1
        if raw is not None and raw.strip():
            found = True
            yield number, _record(raw, header)
    if fmt == "csv" and header is None:
        _header(None, columns)  # raises: an empty body has no header either
    if not found:
        raise ValidationFailed(
            "the body holds no record",
            errors=[FieldError("/", "no record: the body is empty, or only a header or blank")],
        )


def _header(raw: bytes | None, columns: frozenset[str]) -> list[str]:
    cells = None if raw is None else csv_cells(_text(raw) or "")
    if not cells or "subject_id" not in cells:
        raise ValidationFailed(
            "the CSV header must name the columns, subject_id among them",
            errors=[FieldError("/header", "missing or unreadable, or no subject_id column")],
        )
    twice = sorted({c for c in cells if cells.count(c) > 1})
    if twice:  # which cell would win is a guess: a value could be lost silently
        raise ValidationFailed(
            "the CSV header names a column twice",
            errors=[
                FieldError("/header", f"column named twice: {shown_name(name)}")
                for name in twice[:20]
            ],
        )
    unknown = [c for c in cells if c != "subject_id" and c not in columns]
    if unknown:
        raise ValidationFailed(
            "the CSV header names unknown columns",
            errors=[
                FieldError("/header", f"unknown column: {shown_name(name)}")
                for name in unknown[:20]
            ],
        )
    return cells


def _text(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError:
        return None


def _record(raw: bytes | None, header: list[str] | None) -> dict[str, object] | str:
    if raw is None:
        return f"line longer than {MAX_LINE_BYTES} bytes"
    text = _text(raw)
    if text is None:
        return "line is not valid UTF-8"
    if header is None:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):  # JSONDecodeError's message never quotes input
            return "line is not valid JSON"
        if not isinstance(value, dict):
            return "line is not a JSON object"
        if has_duplicate_keys(text, value):
            return "line names a key twice: which value counts is a guess"
        return value
    cells = csv_cells(text)
    if cells is None:
        return "line is not valid CSV (broken quoting)"
    if len(cells) != len(header):
        return f"line has {len(cells)} cells, the header {len(header)}"
    return dict(zip(header, cells, strict=True))


def subject_record(
    line: int, raw: object, rejections: list[Rejection]
) -> tuple[str, dict[str, object]] | None:
    """A line's record and its valid subject id; None, with the rejection noted, for a line
    that could not be read, is not an object, or names no valid subject id. What every kind
    of record is first (each kind then checks its own fields)."""
    if isinstance(raw, str):  # read_records could not parse this line: the text says why
        rejections.append(Rejection(line, None, "malformed_record", None, raw))
        return None
    if not isinstance(raw, dict):
        message = "a record must be an object"
        rejections.append(Rejection(line, None, "malformed_record", None, message))
        return None
    subject = raw.get("subject_id")
    if not isinstance(subject, str) or not SUBJECT_ID_PATTERN.fullmatch(subject):
        message = "subject_id is missing or malformed"
        rejections.append(Rejection(line, None, "invalid_subject_id", "subject_id", message))
        return None
    return subject, raw
