"""Attribute-export adapter: RFC 4180 files in the designated encoding that re-parse to exactly
what was given (or name the column that cannot be written), and summaries refused whenever they
could single a person out. The sandbox recipient's own parser and summariser stand in for the
recipient (fakes over mocks)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.adapters import SummaryRefused, UnencodableValue
from gateway.adapters.attribute_export import (
    LOSSY,
    Cell,
    check_summary,
    content_type,
    encode_row,
    header_bytes,
    looks_per_person,
    render_rows,
)
from gateway.contract_kinds import ExportEncoding, ExportFormat, LineEnding
from gateway.sandbox.uploads import ParsedUpload, build_summary, parse_media_type, parse_upload

COLUMNS = ("member_id", "email", "birth_year", "gender", "postal_code")
SAMPLE = ExportFormat(columns=COLUMNS, encoding=ExportEncoding.SHIFT_JIS)  # the point program's
ROW = {
    "member_id": "k1:" + "ab" * 32,
    "email": hashlib.sha256(b"dana@example.com").hexdigest(),
    "birth_year": "1990",
    "gender": "女性",
    "postal_code": "100-0001",
}


def fmt(**changes: Any) -> ExportFormat:
    return SAMPLE.model_copy(update=changes)


def parse(data: bytes, f: ExportFormat) -> list[list[str]]:
    text = data.decode(f.encoding.value)
    return list(csv.reader(io.StringIO(text, newline=""), delimiter=f.delimiter))


# --- the file


def test_the_sample_format_writes_shift_jis_crlf() -> None:
    assert header_bytes(SAMPLE) == b"member_id,email,birth_year,gender,postal_code\r\n"
    row = encode_row(ROW, SAMPLE)
    assert row == f"{ROW['member_id']},{ROW['email']},1990,女性,100-0001\r\n".encode("shift_jis")
    assert "女性".encode("shift_jis") in row
    assert b"".join(render_rows([ROW, ROW], SAMPLE)) == header_bytes(SAMPLE) + row + row


def test_no_header_and_lf() -> None:
    f = fmt(header=False, line_ending=LineEnding.LF, encoding=ExportEncoding.UTF_8)
    assert list(render_rows([ROW], f)) == [encode_row(ROW, f)]
    assert encode_row(ROW, f).endswith(b"100-0001\n")


def test_missing_values_are_empty_and_extra_keys_are_not_written() -> None:
    row = encode_row({"email": "x", "phone": "+819012345678", "gender": None}, SAMPLE)
    assert row == b",x,,,\r\n"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("a,b", '"a,b"'),
        ('say "hi"', '"say ""hi"""'),
        ("two\r\nlines", '"two\r\nlines"'),
        ("cr\ronly", '"cr\ronly"'),
        ("lf\nonly", '"lf\nonly"'),
        (" spaced ", " spaced "),
        ("a;b", "a;b"),
    ],
)
def test_rfc4180_quoting(value: str, written: str) -> None:
    for ending in LineEnding:
        f = fmt(columns=("gender",), line_ending=ending, encoding=ExportEncoding.UTF_8)
        newline = "\r\n" if ending is LineEnding.CRLF else "\n"
        assert encode_row({"gender": value}, f) == (written + newline).encode()
        assert parse(encode_row({"gender": value}, f), f) == [[value]]


def test_one_empty_field_is_not_a_blank_line() -> None:
    f = fmt(columns=("gender",))
    assert encode_row({}, f) == b'""\r\n'
    assert parse(encode_row({}, f), f) == [[""]]


@pytest.mark.parametrize(
    ("encoding", "value"),
    [
        (ExportEncoding.SHIFT_JIS, "😀"),
        (ExportEncoding.SHIFT_JIS, "髙"),  # IBM extension: cp932 has it, Shift_JIS does not
        (ExportEncoding.SHIFT_JIS, "①"),
        (ExportEncoding.SHIFT_JIS, "¥100"),  # encodes as 0x5C, which decodes as a backslash
        (ExportEncoding.CP932, "〜"),  # WAVE DASH comes back as FULLWIDTH TILDE
        (ExportEncoding.CP932, "𠮷"),
        (ExportEncoding.UTF_8, "\ud800"),
    ],
)
def test_an_unencodable_value_names_its_column_only(encoding: ExportEncoding, value: str) -> None:
    f = fmt(encoding=encoding)
    with pytest.raises(UnencodableValue) as raised:
        encode_row({**ROW, "postal_code": value}, f)
    assert raised.value.column == "postal_code"
    assert value not in str(raised.value)
    with pytest.raises(UnencodableValue):
        list(render_rows([ROW, {**ROW, "gender": value}], f))


def test_cp932_writes_what_shift_jis_cannot() -> None:
    f = fmt(encoding=ExportEncoding.CP932)
    for value in ("髙", "①", "～"):
        assert parse(encode_row({"gender": value}, f), f)[0][3] == value


@pytest.mark.parametrize("encoding", [ExportEncoding.SHIFT_JIS, ExportEncoding.CP932])
def test_the_lossy_table_is_complete(encoding: ExportEncoding) -> None:
    lossy = set()
    for code in range(0x80, 0x10000):
        char = chr(code)
        try:
            encoded = char.encode(encoding.value)
        except UnicodeEncodeError:
            continue
        if encoded.decode(encoding.value) != char:
            lossy.add(char)
    assert lossy == set(LOSSY[encoding])
    with pytest.raises(UnicodeEncodeError):
        "\U0001f600\U00020bb7".encode(encoding.value)  # nothing beyond the BMP encodes


@pytest.mark.parametrize(
    ("f", "expected"),
    [
        (SAMPLE, "text/csv; charset=Shift_JIS"),
        (fmt(encoding=ExportEncoding.UTF_8), "text/csv; charset=UTF-8"),
        (fmt(encoding=ExportEncoding.CP932), "text/csv; charset=Windows-31J"),
        (fmt(delimiter="\t"), "text/csv; charset=Shift_JIS; delimiter=tab"),
        (fmt(delimiter=";"), 'text/csv; charset=Shift_JIS; delimiter=";"'),
        (fmt(delimiter="\t", media_type="text/tab-separated-values"),
         "text/tab-separated-values; charset=Shift_JIS"),
    ],
)  # fmt: skip
def test_content_type(f: ExportFormat, expected: str) -> None:
    assert content_type(f) == expected


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
@pytest.mark.parametrize("encoding", list(ExportEncoding))
def test_the_recipient_reads_the_file(delimiter: str, encoding: ExportEncoding) -> None:
    f = fmt(delimiter=delimiter, encoding=encoding)
    media = parse_media_type(content_type(f))
    assert (media.delimiter, media.codec.replace("-sig", "")) == (delimiter, encoding.value)
    rows = [ROW, {**ROW, "birth_year": "1960", "gender": "男性"}]
    parsed = parse_upload(b"".join(render_rows(rows, f)), media)
    assert parsed.rows == 2
    assert parsed.cells == {("30-39", "女性"): 1, ("60-69", "男性"): 1}


# --- property: what is written re-parses to exactly what was given

formats = st.builds(
    ExportFormat,
    columns=st.just(COLUMNS),
    delimiter=st.sampled_from([",", ";", "\t", "|", " "]),
    header=st.booleans(),
    encoding=st.sampled_from(list(ExportEncoding)),
    line_ending=st.sampled_from(list(LineEnding)),
)
values = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)
rows = st.fixed_dictionaries(dict.fromkeys(COLUMNS, values))


@given(st.lists(rows, max_size=5), formats)
def test_written_rows_reparse_to_the_input(
    given_rows: list[dict[str, str]], f: ExportFormat
) -> None:
    pieces: list[bytes] = [header_bytes(f)] if f.header else []
    kept: list[dict[str, str]] = []
    for row in given_rows:
        try:
            pieces.append(encode_row(row, f))
            kept.append(row)
        except UnencodableValue as exc:
            bad = row[exc.column]
            try:
                ok = bad.encode(f.encoding.value).decode(f.encoding.value) == bad
            except UnicodeEncodeError:
                ok = False
            assert not ok, "only a value without an exact encoding is refused"
    expected = ([list(COLUMNS)] if f.header else []) + [[r[c] for c in COLUMNS] for r in kept]
    assert parse(b"".join(pieces), f) == expected
    if len(kept) == len(given_rows):
        assert b"".join(render_rows(given_rows, f)) == b"".join(pieces)


# --- the summary that comes back

IDENTIFIERS = ("member_id", "email")


def summary(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "upload_id": "up_0123456789abcdef",
        "dimensions": ["age_band", "gender"],
        "cells": [
            {"values": {"age_band": "30-39", "gender": "f"}, "count": 12},
            {"values": {"age_band": "40-49", "gender": "m"}, "count": 10},
        ],
    }
    body.update(changes)
    return body


def with_cell(**changes: Any) -> dict[str, Any]:
    body = summary()
    body["cells"][0].update(changes)
    return body


def test_a_statistical_summary_is_accepted() -> None:
    result = check_summary(summary(), 10, IDENTIFIERS)
    assert result.upload_id == "up_0123456789abcdef"
    assert result.dimensions == ("age_band", "gender")
    assert result.cells[1] == Cell(values={"age_band": "40-49", "gender": "m"}, count=10)
    total = summary(dimensions=[], cells=[{"values": {}, "count": 250}])
    assert check_summary(total, 10, IDENTIFIERS).cells == (Cell(values={}, count=250),)


def test_the_contracts_dimensions_are_the_only_ones_accepted() -> None:
    allowed = ("age_band", "gender", "prefecture")
    assert check_summary(summary(), 10, IDENTIFIERS, allowed).dimensions == ("age_band", "gender")
    with pytest.raises(SummaryRefused) as raised:
        check_summary(summary(), 10, IDENTIFIERS, ("age_band", "prefecture"))
    assert raised.value.problems[0] == (
        "/dimensions/1",
        "is not among the dimensions the contract allows",
    )
    # The refused dimension is the caller's text: each cell counts it, never names it.
    assert ("/cells/0/values", "1 undeclared key(s), not named: not one of the dimensions") in (
        raised.value.problems
    )
    # None: no list in the contract, every valid name goes (the heuristics still apply).
    assert check_summary(summary(), 10, IDENTIFIERS, None).dimensions == ("age_band", "gender")


def sandbox_summary(mode: str) -> dict[str, Any]:
    parsed = ParsedUpload()
    for band, gender, n in (("30-39", "f", 40), ("40-49", "m", 25), ("50-59", "f", 3)):
        parsed.cells[band, gender] += n
        parsed.sample.extend({"member_id": f"m{i}", "age_band": band, "gender": gender}
                             for i in range(n))  # fmt: skip
    # Through JSON, as it arrives.
    loaded: dict[str, Any] = json.loads(
        json.dumps(build_summary("up_1", parsed, mode=mode, min_cell_count=10))
    )
    return loaded


def test_the_sandbox_recipient_summaries() -> None:
    assert len(check_summary(sandbox_summary("ok"), 10, IDENTIFIERS).cells) == 2
    with pytest.raises(SummaryRefused) as raised:
        check_summary(sandbox_summary("small_cells"), 10, IDENTIFIERS)
    assert ("/cells/2/count", "below the minimum cell count 10") in raised.value.problems
    with pytest.raises(SummaryRefused) as raised:
        check_summary(sandbox_summary("per_person"), 10, IDENTIFIERS)
    # "members" is no key a summary declares: counted at the top, never named.
    assert raised.value.problems == (("", "1 undeclared key(s), not named: " + NO_OTHER),)


HEX = hashlib.sha256(b"x").hexdigest()
NO_OTHER = "a summary holds no other key"
REFUSED: list[tuple[str, object, str]] = [
    ("not an object", [summary()], ""),
    ("per-person list", summary(members=[{"member_id": "m1"}]), ""),
    ("extra top key", summary(note="hi"), ""),
    ("per-person name at the top", summary(email="x"), "/email"),
    ("no upload id", {k: v for k, v in summary().items() if k != "upload_id"}, "/upload_id"),
    ("upload id a number", summary(upload_id=7), "/upload_id"),
    ("empty upload id", summary(upload_id=""), "/upload_id"),
    ("no cells key", {k: v for k, v in summary().items() if k != "cells"}, "/cells"),
    ("no cells", summary(cells=[]), "/cells"),
    ("cells not a list", summary(cells={}), "/cells"),
    ("dimensions not a list", summary(dimensions="age_band"), "/dimensions"),
    ("member_id dimension", summary(dimensions=["member_id", "gender"]), "/dimensions/0"),
    ("email dimension", summary(dimensions=["age_band", "email"]), "/dimensions/1"),
    ("subject_id dimension", summary(dimensions=["subject_id"]), "/dimensions/0"),
    ("phone dimension", summary(dimensions=["phone"]), "/dimensions/0"),
    ("hashed dimension", summary(dimensions=["card_sha256"]), "/dimensions/0"),
    ("contract identifier", summary(dimensions=["age_band", "gender", "loyalty_no"]),
     "/dimensions/2"),
    ("dimension not a name", summary(dimensions=["Age Band", "gender"]), "/dimensions/0"),
    ("dimension twice", summary(dimensions=["age_band", "gender", "gender"]), "/dimensions/2"),
    ("extra cell key", with_cell(member_id="m1"), "/cells/0/member_id"),
    ("cell not an object", summary(cells=[["30-39", "f", 12]]), "/cells/0"),
    ("missing dimension value", with_cell(values={"age_band": "30-39"}), "/cells/0/values/gender"),
    ("extra value key", with_cell(values={"age_band": "30-39", "gender": "f", "email": "x"}),
     "/cells/0/values/email"),
    ("value not a string", with_cell(values={"age_band": 30, "gender": "f"}),
     "/cells/0/values/age_band"),
    ("hex value", with_cell(values={"age_band": "30-39", "gender": HEX}),
     "/cells/0/values/gender"),
    ("subject key value", with_cell(values={"age_band": "30-39", "gender": f"k1:{HEX}"}),
     "/cells/0/values/gender"),
    ("email value", with_cell(values={"age_band": "30-39", "gender": "dana@example.com"}),
     "/cells/0/values/gender"),
    ("phone value", with_cell(values={"age_band": "090-1234-5678", "gender": "f"}),
     "/cells/0/values/age_band"),
    ("count below the minimum", with_cell(count=9), "/cells/0/count"),
    ("count zero", with_cell(count=0), "/cells/0/count"),
    ("count negative", with_cell(count=-12), "/cells/0/count"),
    ("count a string", with_cell(count="12"), "/cells/0/count"),
    ("count a float", with_cell(count=12.0), "/cells/0/count"),
    ("count a bool", with_cell(count=True), "/cells/0/count"),
    ("count missing", summary(cells=[{"values": {"age_band": "1", "gender": "f"}}]),
     "/cells/0/count"),
    ("duplicate cells", summary(cells=[summary()["cells"][0]] * 2), "/cells/1"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "pointer"), [pytest.param(body, ptr, id=case) for case, body, ptr in REFUSED]
)
def test_a_summary_that_could_single_out_is_refused(body: object, pointer: str) -> None:
    with pytest.raises(SummaryRefused) as raised:
        check_summary(body, 10, [*IDENTIFIERS, "loyalty_no"])
    assert pointer in [p for p, _ in raised.value.problems], raised.value.problems
    text = str(raised.value.problems)
    for leaked in ("dana@example.com", HEX, "090-1234-5678"):
        assert leaked not in text


def test_a_key_shaped_like_personal_data_is_not_quoted() -> None:
    with pytest.raises(SummaryRefused) as raised:
        check_summary(summary(**{"taro@example.com": 1, HEX: 2}), 10, IDENTIFIERS)
    assert raised.value.problems == (("", "2 undeclared key(s), not named: " + NO_OTHER),)
    assert "taro" not in str(raised.value)


@pytest.mark.parametrize(
    ("value", "per_person"),
    [(HEX, True), (HEX.upper(), True), (HEX[:32], True), (f"k1:{HEX}", True),
     ("a@b.jp", True), ("+819012345678", True), ("090-1234-5678", True),
     ("(800) 555-0100", True), ("30-39", False), ("1990-1999", False), ("f", False),
     ("unknown", False), ("100-0001", False), ("東京都", False), ("deadbeef", False)],
)  # fmt: skip
def test_looks_per_person(value: str, per_person: bool) -> None:
    assert looks_per_person(value) is per_person


# --- properties

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: n not in IDENTIFIERS and n not in {"subject_id", "phone"} and "sha256" not in n
)
plain = st.from_regex(r"[a-z0-9-]{1,6}", fullmatch=True)


@st.composite
def summaries(draw: st.DrawFn) -> dict[str, Any]:
    dims = draw(st.lists(names, min_size=1, max_size=3, unique=True))
    keys = draw(st.lists(st.tuples(*[plain] * len(dims)), min_size=1, max_size=5, unique=True))
    counts = draw(st.lists(st.integers(10, 10**6), min_size=len(keys), max_size=len(keys)))
    cells = [
        {"values": dict(zip(dims, key, strict=True)), "count": n}
        for key, n in zip(keys, counts, strict=True)
    ]
    return {"upload_id": "up_1", "dimensions": dims, "cells": cells}


@given(summaries())
def test_generated_summaries_pass(body: dict[str, Any]) -> None:
    assert len(check_summary(body, 10, IDENTIFIERS).cells) == len(body["cells"])


@given(summaries(), st.data())
def test_any_cell_below_the_minimum_is_refused(body: dict[str, Any], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(body["cells"]) - 1))
    body["cells"][index]["count"] = data.draw(st.integers(-5, 9))
    with pytest.raises(SummaryRefused) as raised:
        check_summary(body, 10, IDENTIFIERS)
    assert f"/cells/{index}/count" in [p for p, _ in raised.value.problems]


@given(summaries(), st.data(), st.text(min_size=1, max_size=10), st.integers() | st.text())
def test_any_extra_key_anywhere_is_refused(
    body: dict[str, Any], data: st.DataObject, key: str, value: object
) -> None:
    where = data.draw(st.sampled_from(["top", "cell", "values"]))
    cell = data.draw(st.sampled_from(body["cells"]))
    target = {"top": body, "cell": cell, "values": cell["values"]}[where]
    if key in target:
        return
    target[key] = value
    with pytest.raises(SummaryRefused):
        check_summary(body, 10, IDENTIFIERS)
