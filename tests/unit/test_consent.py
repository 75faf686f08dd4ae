"""Consent registry: the pure builders, and the streamed import (SQLite in tmp_path, or a fake)."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway import consent, consent_import
from gateway.consent import (
    DiscontinuanceBody,
    GrantBody,
    discontinuance,
    grant_event,
    parse_timestamp,
    withdraw_event,
)
from gateway.consent_import import MAX_REJECTED_DETAILS, ImportResult, RejectCode, import_consents
from gateway.errors import StorageError, ValidationFailed
from gateway.models import ConsentAction, ConsentEvent, Discontinuance, SubjectState
from gateway.storage import ConsentRow
from gateway.storage.sqlite import SqliteStore

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
JST = timezone(timedelta(hours=9))
PURPOSES = frozenset({"ads", "fraud"})
PII = "taro.yamada@example.com"  # must never appear in a rejection reason
EVIDENCE = {"notice_version": "pn-2026-04", "obtained_at": "2026-04-01T09:30:00+09:00"}
GRANT = {"subject_id": "m-1", "purpose": "ads", "action": "grant", **EVIDENCE, "channel": "web"}
WITHDRAW = {"subject_id": "m-1", "purpose": "ads", "action": "withdraw"}


class RecordingStore:
    """A ConsentStore fake that keeps the bulk rows, batch by batch."""

    def __init__(self, fail: bool = False) -> None:
        self.batches: list[list[ConsentRow]] = []
        self.fail = fail

    async def append_consent_rows(
        self, rows: Sequence[ConsentRow], *, recorded_at: datetime, recorded_by: str
    ) -> None:
        if self.fail:
            raise StorageError("disk full")
        self.batches.append(list(rows))

    async def append_consent_events(self, events: Sequence[ConsentEvent]) -> None:
        raise NotImplementedError

    async def consent_history(self, subject_id: str) -> list[ConsentEvent]:
        raise NotImplementedError

    async def subject_states(self, subject_ids: Sequence[str]) -> dict[str, SubjectState]:
        raise NotImplementedError

    async def append_discontinuance(self, item: Discontinuance) -> Discontinuance:
        raise NotImplementedError

    @property
    def rows(self) -> list[ConsentRow]:
        return [row for batch in self.batches for row in batch]


async def stream(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def jsonl(*records: dict[str, Any] | str) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


async def run_import(
    data: bytes | Iterable[bytes], fmt: str = "jsonl", **kw: Any
) -> tuple[ImportResult, RecordingStore]:
    store = kw.pop("store", None) or RecordingStore()
    chunks = [data] if isinstance(data, bytes) else data
    result = await import_consents(
        stream(chunks),
        fmt=fmt,  # type: ignore[arg-type]
        store=store,
        known_purposes=PURPOSES,
        recorded_by="import:admin-1",
        now=NOW,
        **kw,
    )
    return result, store


# --- pure builders ---------------------------------------------------------------------------


def test_grant_event_carries_the_evidence_in_utc() -> None:
    body = GrantBody.model_validate(
        {**EVIDENCE, "channel": "web", "foreign_disclosure_version": "us"}
    )
    event = grant_event("m-1", "ads", body, now=NOW, recorded_by="admin-1")
    assert event.action is ConsentAction.GRANT
    assert event.effective_at == datetime(2026, 4, 1, 0, 30, tzinfo=UTC)
    assert event.effective_at.utcoffset() == timedelta(0)
    assert (event.notice_version, event.channel, event.foreign_disclosure_version) == (
        "pn-2026-04",
        "web",
        "us",
    )
    assert (event.recorded_at, event.recorded_by) == (NOW, "admin-1")


def test_a_grant_obtained_in_the_future_is_refused_with_a_pointer() -> None:
    body = GrantBody(notice_version="pn", obtained_at=NOW + timedelta(seconds=1), channel="web")
    with pytest.raises(ValidationFailed) as caught:
        grant_event("m-1", "ads", body, now=NOW, recorded_by="admin-1")
    assert [e.pointer for e in caught.value.errors] == ["/obtained_at"]
    at_now = body.model_copy(update={"obtained_at": NOW})
    assert grant_event("m-1", "ads", at_now, now=NOW, recorded_by="a").effective_at == NOW


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"obtained_at": "2026-04-01T09:30:00"}, "obtained_at"),  # no UTC offset
        ({"obtained_at": "last tuesday"}, "obtained_at"),
        ({"obtained_at": 1_775_000_000}, "obtained_at"),  # epoch numbers are not accepted
        ({"notice_version": ""}, "notice_version"),
        ({"channel": "   "}, "channel"),
        ({"foreign_disclosure_version": ""}, "foreign_disclosure_version"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_grant_body_validation_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        GrantBody.model_validate({**EVIDENCE, "channel": "web", **change})
    assert [e["loc"][0] for e in caught.value.errors()] == [field]


def test_grant_body_requires_its_evidence() -> None:
    with pytest.raises(ValidationError) as caught:
        GrantBody.model_validate({"obtained_at": "2026-01-01T00:00:00Z"})
    assert {e["loc"][0] for e in caught.value.errors()} == {"notice_version", "channel"}
    naive = datetime(2026, 1, 1)
    with pytest.raises(ValidationError):
        GrantBody(notice_version="pn", obtained_at=naive, channel="web")


def test_withdraw_event_defaults_to_now_and_refuses_future_or_naive_times() -> None:
    event = withdraw_event("m-1", "ads", withdrawn_at=None, now=NOW, recorded_by="admin-1")
    assert (event.action, event.effective_at, event.notice_version) == (
        ConsentAction.WITHDRAW,
        NOW,
        None,
    )
    earlier = datetime(2026, 11, 1, 9, 0, tzinfo=JST)
    got = withdraw_event("m-1", "ads", withdrawn_at=earlier, now=NOW, recorded_by="a")
    assert got.effective_at == earlier
    assert got.effective_at.tzinfo == UTC
    for bad in (NOW + timedelta(minutes=1), datetime(2026, 1, 1)):
        with pytest.raises(ValidationFailed) as caught:
            withdraw_event("m-1", "ads", withdrawn_at=bad, now=NOW, recorded_by="a")
        assert caught.value.errors[0].pointer == "/withdrawn_at"


def test_a_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="now"):
        withdraw_event("m-1", "ads", withdrawn_at=None, now=datetime(2026, 1, 1), recorded_by="a")


def test_discontinuance_for_all_or_named_partners() -> None:
    everyone = DiscontinuanceBody.model_validate({"partners": "all", "reason": "phoned"})
    item = discontinuance("m-1", everyone, now=NOW, recorded_by="admin-1")
    assert (item.partners, item.requested_at, item.reason) == (None, NOW, "phoned")
    named = DiscontinuanceBody(partners=["google", "bank", "google"], reason="letter")
    assert discontinuance("m-1", named, now=NOW, recorded_by="a").partners == ("google", "bank")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"partners": [], "reason": "r"}, "partners"),
        ({"partners": "some", "reason": "r"}, "partners"),
        ({"partners": [""], "reason": "r"}, "partners"),
        ({"partners": "all", "reason": " "}, "reason"),
        ({"partners": "all"}, "reason"),
    ],
)
def test_discontinuance_body_validation(body: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        DiscontinuanceBody.model_validate(body)
    assert {e["loc"][0] for e in caught.value.errors()} == {field}


# --- import: JSONL and CSV -------------------------------------------------------------------


async def test_jsonl_import_into_sqlite(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "gateway.sqlite3")
    try:
        data = jsonl(
            GRANT,
            {**GRANT, "purpose": "fraud", "foreign_disclosure_version": "us-1"},
            {**WITHDRAW, "withdrawn_at": "2026-11-01T00:00:00Z"},
            {**WITHDRAW, "subject_id": "m-2"},
        )
        result, _ = await run_import(data, store=store)
        assert result == ImportResult(
            lines=4, granted=2, withdrawn=2, rejected=0, rejected_lines=[], rejected_truncated=False
        )
        history = await store.consent_history("m-1")
        assert [(e.purpose, e.action.value) for e in history] == [
            ("ads", "grant"),
            ("fraud", "grant"),
            ("ads", "withdraw"),
        ]
        assert history[0].effective_at == datetime(2026, 4, 1, 0, 30, tzinfo=UTC)
        assert history[1].foreign_disclosure_version == "us-1"
        assert {(e.recorded_at, e.recorded_by) for e in history} == {(NOW, "import:admin-1")}
        (m2,) = await store.consent_history("m-2")
        assert m2.effective_at == NOW  # withdrawn_at defaults to the time of the import
    finally:
        await store.close()


async def test_csv_import_any_column_order_bom_crlf_and_quotes(tmp_path: Path) -> None:
    store = await SqliteStore.open(tmp_path / "gateway.sqlite3")
    try:
        data = (
            "\ufeffchannel,action,subject_id,purpose,obtained_at,notice_version,"
            "withdrawn_at,foreign_disclosure_version\r\n"
            '"web, app",grant,m-1,ads,2026-01-01T00:00:00Z,pn-1,,\r\n'
            ",withdraw,m-2,fraud,,,2026-02-01T00:00:00+09:00,\r\n"
            "\r\n"
            "store,grant,m-3,ads,2026-01-01T00:00:00Z,pn-1,,us-1\r\n"
        ).encode()
        result, _ = await run_import(data, "csv", store=store)
        assert (result.lines, result.granted, result.withdrawn, result.rejected) == (3, 2, 1, 0)
        (m1,) = await store.consent_history("m-1")
        assert (m1.channel, m1.foreign_disclosure_version) == ("web, app", None)
        (m2,) = await store.consent_history("m-2")
        assert m2.effective_at == datetime(2026, 1, 31, 15, 0, tzinfo=UTC)
        (m3,) = await store.consent_history("m-3")
        assert m3.foreign_disclosure_version == "us-1"
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("subject_id,purpose,action,colour", "unknown column 'colour'"),
        (f"subject_id,purpose,action,{PII}", "not shown"),
        ("subject_id,purpose,action,purpose", "duplicate column 'purpose'"),
        ("subject_id,action,channel", "missing column 'purpose'"),
        ('subject_id,"purpose,action', "not readable"),
    ],
)
async def test_an_unusable_csv_header_refuses_the_whole_import(header: str, message: str) -> None:
    data = (header + "\nm-1,ads,grant,x\n").encode()
    with pytest.raises(ValidationFailed) as caught:
        await run_import(data, "csv")
    assert message in caught.value.detail or message in str(caught.value.errors)
    assert all(e.pointer.startswith("/columns") for e in caught.value.errors)
    assert PII not in caught.value.detail


async def test_a_csv_header_too_long_refuses_the_import() -> None:
    header = "subject_id,purpose,action," + "x" * consent_import.MAX_LINE_BYTES
    with pytest.raises(ValidationFailed, match="too long"):
        await run_import((header + "\nm-1,ads,withdraw\n").encode(), "csv")


async def test_a_jsonl_bom_is_ignored() -> None:
    result, _ = await run_import(b"\xef\xbb\xbf" + jsonl(GRANT))
    assert (result.granted, result.rejected) == (1, 0)


async def test_an_empty_csv_or_jsonl_imports_nothing() -> None:
    for fmt in ("csv", "jsonl"):
        result, store = await run_import(b"\n\n  \n", fmt)
        assert (result.lines, result.rejected, store.batches) == (0, 0, [])


CSV_HEADER = "subject_id,purpose,action,obtained_at,notice_version,channel"
LONG = json.dumps({**GRANT, "channel": "w" * consent_import.MAX_LINE_BYTES})

REJECTIONS: list[tuple[str, bytes | dict[str, Any] | str, RejectCode]] = [
    ("jsonl", b'{"subject_id": "m-\xff1"}', RejectCode.INVALID_UTF8),
    ("jsonl", "{not json", RejectCode.INVALID_JSON),
    ("jsonl", '["subject_id", "m-1"]', RejectCode.INVALID_JSON),
    ("jsonl", "[" * 100_000, RejectCode.LINE_TOO_LONG),
    ("jsonl", "[" * 50_000, RejectCode.INVALID_JSON),  # too deep for the parser
    ("jsonl", LONG, RejectCode.LINE_TOO_LONG),
    ("jsonl", {**GRANT, "email": PII}, RejectCode.UNKNOWN_FIELD),
    ("jsonl", {**GRANT, PII: "x"}, RejectCode.UNKNOWN_FIELD),
    ("jsonl", {**WITHDRAW, "obtained_at": "2026-01-01T00:00:00Z"}, RejectCode.FIELD_NOT_ALLOWED),
    ("jsonl", {**GRANT, "withdrawn_at": "2026-01-01T00:00:00Z"}, RejectCode.FIELD_NOT_ALLOWED),
    ("jsonl", {k: v for k, v in GRANT.items() if k != "channel"}, RejectCode.MISSING_FIELD),
    ("jsonl", {**GRANT, "notice_version": None}, RejectCode.MISSING_FIELD),
    ("jsonl", {k: v for k, v in GRANT.items() if k != "action"}, RejectCode.MISSING_FIELD),
    ("jsonl", {k: v for k, v in GRANT.items() if k != "subject_id"}, RejectCode.MISSING_FIELD),
    ("jsonl", {k: v for k, v in GRANT.items() if k != "obtained_at"}, RejectCode.MISSING_FIELD),
    ("jsonl", {**GRANT, "action": "maybe"}, RejectCode.INVALID_VALUE),
    ("jsonl", {**GRANT, "subject_id": 12345}, RejectCode.INVALID_VALUE),
    ("jsonl", {**GRANT, "subject_id": PII + " x"}, RejectCode.INVALID_VALUE),
    ("jsonl", {**GRANT, "channel": "  "}, RejectCode.INVALID_VALUE),
    ("jsonl", {**GRANT, "purpose": ["ads"]}, RejectCode.INVALID_VALUE),
    ("jsonl", {**GRANT, "purpose": PII}, RejectCode.UNKNOWN_PURPOSE),
    ("jsonl", {**GRANT, "obtained_at": PII}, RejectCode.INVALID_TIMESTAMP),
    ("jsonl", {**GRANT, "obtained_at": "2026-04-01T09:30:00"}, RejectCode.INVALID_TIMESTAMP),
    ("jsonl", {**GRANT, "obtained_at": 1_775_000_000}, RejectCode.INVALID_VALUE),
    ("jsonl", {**GRANT, "obtained_at": "2026-11-24T12:00:01Z"}, RejectCode.FUTURE_TIMESTAMP),
    ("jsonl", {**WITHDRAW, "withdrawn_at": "2027-01-01T00:00:00Z"}, RejectCode.FUTURE_TIMESTAMP),
    ("jsonl", json.dumps(GRANT)[:-1] + ', "subject_id": "m-2"}', RejectCode.INVALID_JSON),
    ("jsonl", {**GRANT, "notice_version": "n" * 501}, RejectCode.INVALID_VALUE),
    ("jsonl", {**GRANT, "foreign_disclosure_version": "v" * 501}, RejectCode.INVALID_VALUE),
    # Before 2000: a typing mistake, and near year 1 not even storable in UTC.
    ("jsonl", {**GRANT, "obtained_at": "0001-01-01T00:00:00+09:00"}, RejectCode.INVALID_TIMESTAMP),
    (
        "jsonl",
        {**WITHDRAW, "withdrawn_at": "0001-01-01T08:59:59+09:00"},
        RejectCode.INVALID_TIMESTAMP,
    ),
    ("jsonl", {**GRANT, "obtained_at": "2000-01-01T08:59:59+09:00"}, RejectCode.INVALID_TIMESTAMP),
    ("csv", "m-1,ads,grant,0001-01-01T00:00:00+09:00,pn,web", RejectCode.INVALID_TIMESTAMP),
    ("csv", b"m-1,ads,grant,2026-01-01T00:00:00Z,pn,\xff", RejectCode.INVALID_UTF8),
    ("csv", 'm-1,ads,grant,2026-01-01T00:00:00Z,pn,"web', RejectCode.INVALID_CSV),
    ("csv", "m-1,ads,grant,2026-01-01T00:00:00Z,pn", RejectCode.CELL_COUNT),
    ("csv", "m-1,ads,grant,2026-01-01T00:00:00Z,pn,web,extra", RejectCode.CELL_COUNT),
    ("csv", "m-1,ads,grant,2026-01-01T00:00:00Z,,web", RejectCode.MISSING_FIELD),
    ("csv", f"m-1,{PII},grant,2026-01-01T00:00:00Z,pn,web", RejectCode.UNKNOWN_PURPOSE),
]


@pytest.mark.parametrize(("fmt", "line", "code"), REJECTIONS)
async def test_every_rejection_code(
    fmt: str, line: bytes | dict[str, Any] | str, code: RejectCode
) -> None:
    raw = line if isinstance(line, bytes) else (line if isinstance(line, str) else json.dumps(line))
    raw = raw.encode() if isinstance(raw, str) else raw
    good = jsonl(GRANT) if fmt == "jsonl" else b"m-0,ads,grant,2026-01-01T00:00:00Z,pn,web\n"
    head = (CSV_HEADER + "\n").encode() if fmt == "csv" else b""
    result, store = await run_import(head + good + raw + b"\n" + good, fmt)
    first = 2 if fmt == "csv" else 1
    assert (result.lines, result.rejected, len(store.rows)) == (3, 1, 2)
    (rejected,) = result.rejected_lines
    assert (rejected.line, rejected.code) == (first + 1, code)
    assert PII not in rejected.reason
    assert "m-0" not in rejected.reason
    assert "m-1" not in rejected.reason


async def test_line_numbers_are_physical_and_blank_lines_are_not_counted() -> None:
    data = b"\n" + jsonl(GRANT) + b"   \n\r\n" + b"{bad\n" + b"\n"
    result, _ = await run_import(data)
    assert (result.lines, result.granted, result.rejected) == (2, 1, 1)
    assert [r.line for r in result.rejected_lines] == [5]


async def test_rejected_details_stop_at_1000_but_all_are_counted() -> None:
    bad = MAX_REJECTED_DETAILS + 500
    result, store = await run_import(jsonl(*["{bad"] * bad, GRANT))
    assert (result.rejected, result.granted, result.lines) == (bad, 1, bad + 1)
    assert len(result.rejected_lines) == MAX_REJECTED_DETAILS
    assert result.rejected_truncated is True
    assert result.rejected_lines[-1].line == MAX_REJECTED_DETAILS
    assert len(store.rows) == 1


async def test_rows_are_written_in_batches_of_batch_size() -> None:
    result, store = await run_import(jsonl(*[GRANT] * 10), batch_size=3)
    assert [len(b) for b in store.batches] == [3, 3, 3, 1]
    assert result.granted == 10
    with pytest.raises(ValueError, match="batch_size"):
        await run_import(jsonl(GRANT), batch_size=0)


async def test_a_store_failure_stops_the_import() -> None:
    with pytest.raises(StorageError):
        await run_import(jsonl(GRANT), store=RecordingStore(fail=True))


async def test_a_line_split_across_many_chunks_including_inside_a_character() -> None:
    data = jsonl({**GRANT, "channel": "店頭"}, WITHDRAW)
    result, store = await run_import([data[i : i + 1] for i in range(len(data))])
    assert (result.granted, result.withdrawn, result.rejected) == (1, 1, 0)
    assert store.rows[0][5] == "店頭"


# --- properties ------------------------------------------------------------------------------

POOL: list[bytes] = [
    jsonl(GRANT).strip(),
    jsonl({**GRANT, "channel": "店頭", "foreign_disclosure_version": "us"}).strip(),
    jsonl(WITHDRAW).strip(),
    jsonl({**WITHDRAW, "withdrawn_at": "2026-01-01T00:00:00+09:00"}).strip(),
    jsonl({**GRANT, "purpose": "astrology"}).strip(),
    b"{broken",
    b"",
    b"   ",
    b'{"subject_id": "\xe5\xba\x97\xff"}',
    b"x" * 300,  # over the (patched) line limit
    b" " * 300,  # too long even though blank
]


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    lines=st.lists(st.sampled_from(POOL), max_size=25),
    crlf=st.booleans(),
    final_newline=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=30),
)
def test_chunking_never_changes_the_result(
    lines: list[bytes], crlf: bool, final_newline: bool, cuts: list[int]
) -> None:
    data = (b"\r\n" if crlf else b"\n").join(lines) + (b"\n" if final_newline else b"")
    with mock.patch.object(consent_import, "MAX_LINE_BYTES", 200):
        whole = asyncio.run(run_import(data))
        pieces = asyncio.run(run_import(chunked(data, cuts)))
    assert pieces[0] == whole[0]
    assert pieces[1].rows == whole[1].rows
    assert whole[0].lines == sum(1 for line in lines if line.strip() or len(line) > 200)


# Values a field may take: valid ones, and every kind of wrong one.
VALUES: dict[str, list[Any]] = {
    "subject_id": ["m-1", "M.2:x@y_z-", "", " m-1", "m 1", 7, None, "a" * 129],
    "purpose": ["ads", "fraud", "astrology", "", 1, None, ["ads"]],
    "action": ["grant", "withdraw", "Grant", "", None, 0],
    "obtained_at": [
        "2026-04-01T09:30:00+09:00",
        "2026-04-01T00:30:00Z",
        "2026-04-01 00:30:00.123456+00:00",
        "2026-04-01T09:30:00",
        "2026-04-01",
        "2026-11-24T12:00:00Z",
        "2026-11-24T12:00:00.000001Z",
        "soon",
        "",
        1_775_000_000,
        None,
    ],
    "notice_version": ["pn-1", "", "  ", None, 3],
    "channel": ["web", "店頭", "", None, False],
    "foreign_disclosure_version": ["us-1", "", None, 2.5],
    "withdrawn_at": ["2026-01-01T00:00:00Z", "2030-01-01T00:00:00Z", "x", "", None, 5],
    "email": [PII],
}


BASES: list[dict[str, Any]] = [
    GRANT,
    {**GRANT, "foreign_disclosure_version": "us-1"},
    WITHDRAW,
    {**WITHDRAW, "withdrawn_at": "2026-01-01T00:00:00Z"},
]


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """A valid line with up to three fields replaced, removed or added."""
    record = dict(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        key = draw(st.sampled_from(sorted(VALUES)))
        if key in record and draw(st.booleans()):
            del record[key]
        else:
            record[key] = draw(st.sampled_from(VALUES[key]))
    return record


def reference(record: dict[str, Any]) -> ConsentRow | None:
    """What the documented rules accept, via the models the API uses (GrantBody,
    withdraw_event) instead of the import's own code."""
    subject, purpose, action = (record.get(k) for k in ("subject_id", "purpose", "action"))
    if not isinstance(subject, str) or not consent.SUBJECT_ID_PATTERN.fullmatch(subject):
        return None
    if not isinstance(purpose, str) or purpose not in PURPOSES:
        return None
    evidence = {k: v for k, v in record.items() if k not in {"subject_id", "purpose", "action"}}
    evidence = {k: v for k, v in evidence.items() if v is not None}  # null means absent
    try:
        if action == "grant":
            body = GrantBody.model_validate(evidence)
            event = grant_event(subject, purpose, body, now=NOW, recorded_by="x")
        elif action == "withdraw" and set(evidence) <= {"withdrawn_at"}:
            raw = evidence.get("withdrawn_at")
            if raw is not None and not isinstance(raw, str):
                return None
            at = None if raw is None else consent.parse_timestamp(raw)
            event = withdraw_event(subject, purpose, withdrawn_at=at, now=NOW, recorded_by="x")
        else:
            return None
    except (ValidationError, ValidationFailed, ValueError):
        return None
    e = event
    return (
        subject,
        purpose,
        action,
        e.effective_at,
        e.notice_version,
        e.channel,
        e.foreign_disclosure_version,
    )


@settings(max_examples=2000, deadline=None)
@given(record=records())
def test_the_import_accepts_exactly_what_the_api_models_accept(record: dict[str, Any]) -> None:
    expected = reference(record)
    reason = ""
    try:
        checked: ConsentRow | None = consent_import._row(record, PURPOSES, NOW)
    except consent_import._Reject as exc:
        checked, reason = None, exc.reason
    assert PII not in reason
    fast = consent_import._quick_row(record, PURPOSES, NOW)
    assert (checked is None) == (expected is None)
    if expected is not None:
        assert checked is not None
        assert checked[:3] == expected[:3]
        assert checked[3] == expected[3]  # the same instant (offsets may differ)
        assert checked[4:] == expected[4:]
    assert fast is None or fast == checked  # the fast path is a subset, never a variant


def test_the_earliest_plausible_time_is_2000_in_utc() -> None:
    assert parse_timestamp("2000-01-01T09:00:00+09:00") == datetime(2000, 1, 1, tzinfo=UTC)
    for early in ("1999-12-31T23:59:59Z", "2000-01-01T08:59:59+09:00", "0001-01-01T00:00:00+14:00"):
        with pytest.raises(ValueError, match="before 2000-01-01"):
            parse_timestamp(early)
    with pytest.raises(ValidationError):
        GrantBody.model_validate({"notice_version": "n", "channel": "web",
                                  "obtained_at": "0001-01-01T00:00:00+09:00"})  # fmt: skip


def test_evidence_is_a_label_not_a_document() -> None:
    """The API takes what the import takes: at most MAX_TEXT characters."""
    body = {"notice_version": "n" * 500, "channel": "web", "obtained_at": "2026-04-01T00:00:00Z"}
    assert GrantBody.model_validate(body).notice_version == "n" * 500
    with pytest.raises(ValidationError):
        GrantBody.model_validate({**body, "notice_version": "n" * 501})
    with pytest.raises(ValidationError):
        DiscontinuanceBody.model_validate({"partners": "all", "reason": "r" * 501})
