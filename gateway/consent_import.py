"""Streamed bulk import of consent grants and withdrawals (JSONL or CSV).

`import_consents` does I/O only through the ConsentStore it is handed. It validates each line
with a hand-written fast path (one `json.loads` and a few checks, no model per line: a million
lines must import in seconds) that accepts exactly what `gateway.consent.GrantBody` and
`withdraw_event` accept; tests hold the two to that.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterable, Awaitable, Callable
from datetime import datetime
from enum import StrEnum
from typing import Final, Literal

from gateway.consent import EARLIEST, MAX_TEXT, SUBJECT_ID_PATTERN, aware_now, parse_timestamp
from gateway.cooperative import yield_loop
from gateway.errors import FieldError, ValidationFailed, shown_name
from gateway.models import Frozen
from gateway.storage import ConsentRow, ConsentStore

MAX_REJECTED_DETAILS = 1000
# A longer line is rejected without being held: memory stays flat whatever the input.
MAX_LINE_BYTES = 64 * 1024
_BOM: Final = b"\xef\xbb\xbf"  # U+FEFF in UTF-8
# Rows per store transaction. Random-order subjects touch about one index page per row, so on
# SQLite (synchronous=FULL) the commit's page writes dominate: measured on the 2-core reference
# machine, 1M lines took 45-58 s in 5,000-row batches and 22-26 s in 50,000-row ones. The price
# is ~25 MB of rows held and a store busy ~0.5 s per batch (bench/consent_import.py).
DEFAULT_BATCH_SIZE = 50_000


class RejectCode(StrEnum):
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"  # broken JSON, or not a JSON object
    INVALID_CSV = "invalid_csv"  # broken quoting
    CELL_COUNT = "cell_count"  # not as many CSV cells as header columns
    LINE_TOO_LONG = "line_too_long"
    UNKNOWN_FIELD = "unknown_field"
    FIELD_NOT_ALLOWED = "field_not_allowed"  # e.g. obtained_at on a withdrawal
    MISSING_FIELD = "missing_field"
    INVALID_VALUE = "invalid_value"  # wrong type, empty, bad action, bad subject id
    UNKNOWN_PURPOSE = "unknown_purpose"
    INVALID_TIMESTAMP = "invalid_timestamp"
    FUTURE_TIMESTAMP = "future_timestamp"


class RejectedLine(Frozen):
    line: int  # 1-based physical line number (blank lines and a CSV header count)
    code: RejectCode
    reason: str  # names the field; never quotes the line (it may hold personal data)


class ImportResult(Frozen):
    lines: int  # non-blank data lines read (not the CSV header): granted + withdrawn + rejected
    granted: int
    withdrawn: int
    rejected: int
    rejected_lines: list[RejectedLine]  # the first MAX_REJECTED_DETAILS
    rejected_truncated: bool


_COMMON = frozenset({"subject_id", "purpose", "action"})
_ALLOWED = {
    "grant": _COMMON | {"obtained_at", "notice_version", "channel", "foreign_disclosure_version"},
    "withdraw": _COMMON | {"withdrawn_at"},
}
FIELDS = _ALLOWED["grant"] | _ALLOWED["withdraw"]


class _Reject(Exception):
    def __init__(self, code: RejectCode, reason: str) -> None:
        self.code = code
        self.reason = reason


def _text(record: dict[str, object], name: str) -> str | None:
    """The field as non-blank text, or None; JSON null and empty CSV cells count as absent."""
    value = record.get(name)
    if value is None:
        return None
    if type(value) is not str:
        raise _Reject(RejectCode.INVALID_VALUE, f"{name}: must be a string")
    if not value.strip():
        raise _Reject(RejectCode.INVALID_VALUE, f"{name}: must not be empty")
    if len(value) > MAX_TEXT:
        raise _Reject(RejectCode.INVALID_VALUE, f"{name}: at most {MAX_TEXT} characters")
    return value


def _required(record: dict[str, object], name: str) -> str:
    value = _text(record, name)
    if value is None:
        raise _Reject(RejectCode.MISSING_FIELD, f"{name}: required")
    return value


def _instant(raw: str, name: str, now: datetime) -> datetime:
    try:
        at = parse_timestamp(raw)
    except ValueError as exc:
        raise _Reject(RejectCode.INVALID_TIMESTAMP, f"{name}: {exc}") from None
    if at > now:
        raise _Reject(RejectCode.FUTURE_TIMESTAMP, f"{name}: later than the time of the import")
    return at


def _row(record: dict[str, object], purposes: frozenset[str], now: datetime) -> ConsentRow:
    """One validated line. Raises _Reject with the first problem found."""
    if not record.keys() <= FIELDS:
        unknown = min(record.keys() - FIELDS)
        raise _Reject(RejectCode.UNKNOWN_FIELD, f"unknown field {shown_name(unknown)}")
    action = _required(record, "action")
    allowed = _ALLOWED.get(action)
    if allowed is None:
        raise _Reject(RejectCode.INVALID_VALUE, 'action: must be "grant" or "withdraw"')
    for name, value in record.items():
        if value is not None and name not in allowed:
            raise _Reject(RejectCode.FIELD_NOT_ALLOWED, f"{name}: not allowed with {action}")
    subject = _required(record, "subject_id")
    if not SUBJECT_ID_PATTERN.fullmatch(subject):
        raise _Reject(RejectCode.INVALID_VALUE, "subject_id: 1-128 letters, digits, . _ : @ -")
    purpose = _required(record, "purpose")
    if purpose not in purposes:
        raise _Reject(RejectCode.UNKNOWN_PURPOSE, "purpose: not declared by any contract")
    if action == "withdraw":
        withdrawn_at = _text(record, "withdrawn_at")
        at = now if withdrawn_at is None else _instant(withdrawn_at, "withdrawn_at", now)
        return (subject, purpose, action, at, None, None, None)
    obtained_at = _instant(_required(record, "obtained_at"), "obtained_at", now)
    notice = _required(record, "notice_version")
    channel = _required(record, "channel")
    disclosure = _text(record, "foreign_disclosure_version")
    return (subject, purpose, action, obtained_at, notice, channel, disclosure)


_GRANT_FIELDS = _ALLOWED["grant"]
_WITHDRAW_FIELDS = _ALLOWED["withdraw"]
_subject_ok = SUBJECT_ID_PATTERN.fullmatch


def _quick_row(
    record: dict[str, object], purposes: frozenset[str], now: datetime
) -> ConsentRow | None:
    """The common, valid line, checked with as few operations as possible; None hands the line
    to `_row`, which names the problem. Accepts only what `_row` accepts, with the same row
    (tests/unit/test_consent.py holds the two together)."""
    get = record.get
    subject, purpose, action = get("subject_id"), get("purpose"), get("action")
    if type(subject) is not str or type(purpose) is not str:
        return None
    if purpose not in purposes or not _subject_ok(subject):
        return None
    if action == "grant":
        obtained, notice, channel = get("obtained_at"), get("notice_version"), get("channel")
        disclosure = get("foreign_disclosure_version")
        if type(obtained) is not str or type(notice) is not str or type(channel) is not str:
            return None
        if not notice.strip() or not channel.strip() or not record.keys() <= _GRANT_FIELDS:
            return None
        if disclosure is not None and (type(disclosure) is not str or not disclosure.strip()):
            return None
        if len(notice) > MAX_TEXT or len(channel) > MAX_TEXT or len(disclosure or "") > MAX_TEXT:
            return None
    elif action == "withdraw" and record.keys() <= _WITHDRAW_FIELDS:
        obtained = get("withdrawn_at")
        if obtained is None:
            return (subject, purpose, action, now, None, None, None)
        if type(obtained) is not str:
            return None
        notice = channel = disclosure = None
    else:
        return None
    try:
        at = datetime.fromisoformat(obtained)
    except ValueError:
        return None
    if at.tzinfo is None or at.year <= EARLIEST.year or at > now:  # the full check says why
        return None
    return (subject, purpose, action, at, notice, channel, disclosure)


class LineSplitter:
    """Cuts a byte stream into lines however it is chunked. Holds at most MAX_LINE_BYTES of an
    unfinished line; a longer line comes out as None (and is rejected, not buffered). A UTF-8
    byte order mark before the first line (spreadsheet programs start exported CSV with one)
    is dropped; one anywhere later is data."""

    def __init__(self) -> None:
        self._head: list[bytes] = []
        self._held = 0
        self._overflow = False
        self._first = True  # no line has come out yet

    def feed(self, chunk: bytes) -> list[bytes | None]:
        parts = chunk.split(b"\n")
        tail = parts.pop()
        # A long line is refused whether or not it happened to arrive within one chunk.
        lines: list[bytes | None] = [None if len(p) > MAX_LINE_BYTES else p for p in parts]
        if lines and (self._head or self._overflow):
            lines[0] = self._complete(parts[0])
        self._hold(tail)
        return self._started(lines)

    def finish(self) -> list[bytes | None]:
        return self._started([self._complete(b"")] if self._head or self._overflow else [])

    def _started(self, lines: list[bytes | None]) -> list[bytes | None]:
        if self._first and lines:
            self._first = False
            head = lines[0]
            if head is not None and head.startswith(_BOM):
                lines[0] = head[len(_BOM) :]
        return lines

    def _complete(self, end: bytes) -> bytes | None:
        line = None if self._overflow else b"".join([*self._head, end])
        self._head, self._held, self._overflow = [], 0, False
        if line is not None and len(line) > MAX_LINE_BYTES:
            return None
        return line

    def _hold(self, part: bytes) -> None:
        if self._overflow or not part:
            return
        self._held += len(part)
        if self._held > MAX_LINE_BYTES:
            self._head, self._overflow = [], True
        else:
            self._head.append(part)


class _Importer:
    """Turns lines into rows and rejections; the caller flushes rows to the store."""

    def __init__(self, fmt: Literal["jsonl", "csv"], purposes: frozenset[str], now: datetime):
        self.csv = fmt == "csv"
        self.purposes = purposes
        self.now = now
        self.columns: tuple[str, ...] | None = None
        self.rows: list[ConsentRow] = []
        self.number = self.lines = self.granted = self.withdrawn = self.rejected = 0
        self.withdrawals: list[tuple[str, str]] = []  # (subject, purpose) since the last flush
        self.details: list[RejectedLine] = []

    def take(self, raw: bytes | None) -> None:
        """Raises ValidationFailed when a CSV header is unusable (the whole import stops)."""
        self.number += 1
        if raw is None:  # longer than MAX_LINE_BYTES (LineSplitter)
            return self._too_long()
        if raw[-1:] == b"\r":
            raw = raw[:-1]
        if not raw or raw.isspace():
            return None
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            text = None
        if self.csv and self.columns is None:
            return self._header(text)
        self.lines += 1
        if text is None:
            return self._reject(RejectCode.INVALID_UTF8, "the line is not valid UTF-8")
        try:
            record = self._cells(text) if self.csv else _object(text)
            row = _quick_row(record, self.purposes, self.now) or _row(
                record, self.purposes, self.now
            )
        except _Reject as exc:
            return self._reject(exc.code, exc.reason)
        self.rows.append(row)
        if row[2] == "grant":
            self.granted += 1
        else:
            self.withdrawn += 1
            self.withdrawals.append((row[0], row[1]))
        return None

    def _too_long(self) -> None:
        if self.csv and self.columns is None:
            raise ValidationFailed(
                "the CSV header row is too long",
                errors=[FieldError("/columns", f"over {MAX_LINE_BYTES} bytes")],
            )
        self.lines += 1
        self._reject(RejectCode.LINE_TOO_LONG, f"over {MAX_LINE_BYTES} bytes")

    def _reject(self, code: RejectCode, reason: str) -> None:
        self.rejected += 1
        if len(self.details) < MAX_REJECTED_DETAILS:
            self.details.append(RejectedLine(line=self.number, code=code, reason=reason))

    def _header(self, text: str | None) -> None:
        """Raises ValidationFailed naming the unusable columns."""
        names = None if text is None else csv_cells(text)
        if names is None:
            raise ValidationFailed(
                "the CSV header row is not readable",
                errors=[FieldError("/columns", "not valid UTF-8 CSV")],
            )
        errors = [
            FieldError(f"/columns/{i}", f"unknown column {shown_name(name)}")
            for i, name in enumerate(names)
            if name not in FIELDS
        ]
        errors += [
            FieldError(f"/columns/{i}", f"duplicate column {name!r}")
            for i, name in enumerate(names)
            if name in FIELDS and name in names[:i]
        ]
        errors += [
            FieldError("/columns", f"missing column {n!r}") for n in sorted(_COMMON - {*names})
        ]
        if errors:
            raise ValidationFailed(
                "the CSV header is not usable: " + "; ".join(e.detail for e in errors[:5]),
                errors=errors,
            )
        self.columns = tuple(names)

    def _cells(self, text: str) -> dict[str, object]:
        assert self.columns is not None
        # Without quotes or stray CR, a CSV line is exactly its comma-separated parts.
        cells = text.split(",") if '"' not in text and "\r" not in text else csv_cells(text)
        if cells is None:
            raise _Reject(RejectCode.INVALID_CSV, "the line is not valid CSV (check its quotes)")
        if len(cells) != len(self.columns):
            raise _Reject(
                RejectCode.CELL_COUNT, f"{len(cells)} cells, the header has {len(self.columns)}"
            )
        return {name: cell for name, cell in zip(self.columns, cells, strict=True) if cell}

    def result(self) -> ImportResult:
        return ImportResult(
            lines=self.lines,
            granted=self.granted,
            withdrawn=self.withdrawn,
            rejected=self.rejected,
            rejected_lines=self.details,
            rejected_truncated=self.rejected > len(self.details),
        )


def csv_cells(text: str) -> list[str] | None:
    try:
        return next(csv.reader((text,), strict=True), [])
    except csv.Error:
        return None


# The C scanner json.loads itself uses (set in JSONDecoder.__init__; typeshed omits it).
_scan_json: Callable[[str, int], tuple[object, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def has_duplicate_keys(text: str, value: dict[str, object]) -> bool:
    """Whether the JSON object `text` (parsed as `value`) names a key twice, at any depth: JSON
    keeps the last, so a line naming subject_id twice would act for whoever is named last.
    Fast for the flat lines of an import or upload: each key is followed by `":`, so a line
    with no more of those than `value` has keys has no duplicate; only one with more (nested
    objects, `":` inside a string) is parsed again, keeping every pair."""
    if text.count('":') <= len(value):
        return False

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        keys = [key for key, _ in items]
        if len(set(keys)) != len(keys):
            raise _Duplicate
        return dict(items)

    try:
        json.loads(text, object_pairs_hook=pairs)
    except _Duplicate:
        return True
    return False


class _Duplicate(Exception):
    """has_duplicate_keys found a key named twice."""


def _object(text: str) -> dict[str, object]:
    """Raises _Reject unless the text is one JSON object, with no key named twice."""
    value = _parsed(text)
    if has_duplicate_keys(text, value):
        raise _Reject(RejectCode.INVALID_JSON, "names a key twice: which value counts is a guess")
    return value


def _parsed(text: str) -> dict[str, object]:
    """Raises _Reject unless the text is one JSON object."""
    if text[:1] == "{":
        # json.loads minus its wrapper: the same scanner, exact when it ends at the line's end.
        try:
            value, end = _scan_json(text, 0)
        except (StopIteration, ValueError, RecursionError):
            pass
        else:
            if end == len(text) and type(value) is dict:
                return value
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:  # its msg never quotes the input
        raise _Reject(RejectCode.INVALID_JSON, f"not valid JSON: {exc.msg}") from None
    except (ValueError, RecursionError):  # nesting too deep for the parser
        raise _Reject(RejectCode.INVALID_JSON, "not valid JSON") from None
    if type(value) is not dict:
        raise _Reject(RejectCode.INVALID_JSON, "the line is not a JSON object")
    return value


async def import_consents(
    chunks: AsyncIterable[bytes],
    *,
    fmt: Literal["jsonl", "csv"],
    store: ConsentStore,
    known_purposes: frozenset[str],
    recorded_by: str,
    now: datetime,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_withdrawn: Callable[[list[tuple[str, str]]], Awaitable[None]] | None = None,
    pause: Callable[[], Awaitable[None]] = yield_loop,
) -> ImportResult:
    """Read grants and withdrawals line by line and append them in batches of `batch_size`.

    A bad line is rejected (counted; the first MAX_REJECTED_DETAILS listed) and the import goes
    on. Each batch is its own transaction: if the store fails, the batches before stay
    (re-importing the file is harmless: equal events leave every current state unchanged).
    `on_withdrawn` is called with the (subject, purpose) of the withdrawals of each batch once
    the batch is stored (the service queues removals from partners with it). `pause` is
    awaited after each chunk of the source (Priority.pause: a fraud check goes first).
    Raises ValidationFailed for an unusable CSV header, StorageError, ValueError if `now` is
    naive or batch_size < 1.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be positive")
    now = aware_now(now)
    importer = _Importer(fmt, known_purposes, now)
    splitter = LineSplitter()

    async def flush() -> None:
        if importer.rows:
            rows, importer.rows = importer.rows, []
            await store.append_consent_rows(rows, recorded_at=now, recorded_by=recorded_by)
        if importer.withdrawals:  # once stored: what follows a withdrawal (APPI Art. 35)
            withdrawn, importer.withdrawals = importer.withdrawals, []
            if on_withdrawn is not None:
                await on_withdrawn(withdrawn)

    # No write is overlapped with parsing: both need the GIL, and measured, overlapping them
    # was slower than taking turns.
    async for chunk in chunks:
        for raw in splitter.feed(chunk):
            importer.take(raw)
            if len(importer.rows) >= batch_size:
                await flush()
        await pause()  # a source that never suspends must not starve the loop
    for raw in splitter.finish():
        importer.take(raw)
    await flush()
    return importer.result()
