"""Point-program uploads: media types and charsets, row counting, and the three summary modes."""

from __future__ import annotations

import pytest

from gateway.sandbox.uploads import (
    MediaType,
    ParsedUpload,
    UploadRejected,
    age_band,
    build_summary,
    parse_media_type,
    parse_upload,
)

ROWS: list[tuple[str, ...]] = [
    ("m1", "山田", "1990", "F"),
    ("m2", "佐藤", "1991", "f"),
    ("m3", "鈴木", "", "m"),
]


def csv_text(rows: list[tuple[str, ...]] = ROWS, sep: str = ",") -> str:
    lines = [sep.join(("member_id", "name", "birth_year", "gender"))]
    lines += [sep.join(row) for row in rows]
    return "\r\n".join(lines) + "\r\n"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("text/csv; charset=Shift_JIS", MediaType("text/csv", "shift_jis", ",")),
        ("text/csv; charset=shift_jis", MediaType("text/csv", "shift_jis", ",")),
        ("text/csv; charset=Windows-31J", MediaType("text/csv", "cp932", ",")),
        ("text/csv", MediaType("text/csv", "utf-8-sig", ",")),
        ('Text/CSV; charset=UTF-8; delimiter=";"', MediaType("text/csv", "utf-8-sig", ";")),
        ('text/csv; delimiter="|"', MediaType("text/csv", "utf-8-sig", "|")),
        ("text/csv; delimiter=tab", MediaType("text/csv", "utf-8-sig", "\t")),
        (
            "text/tab-separated-values; charset=EUC-JP",
            MediaType("text/tab-separated-values", "euc_jp", "\t"),
        ),
    ],
)
def test_media_types(header: str, expected: MediaType) -> None:
    assert parse_media_type(header) == expected


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("application/json", 415),
        ("", 415),
        ("text/csv; charset=klingon", 415),
        ("text/csv; delimiter=ab", 400),
        ("text/csv; delimiter=;", 400),  # ";" is a tspecial (RFC 2045 §5.1): quote it
        ('text/csv; delimiter="\\""', 400),
    ],
)
def test_bad_media_types(header: str, status: int) -> None:
    with pytest.raises(UploadRejected) as caught:
        parse_media_type(header)
    assert caught.value.status == status


def test_shift_jis_file_with_japanese_names_is_counted() -> None:
    media = parse_media_type("text/csv; charset=Shift_JIS")
    parsed = parse_upload(csv_text().encode("shift_jis"), media)
    assert parsed.rows == 3
    assert parsed.cells == {("30-39", "f"): 2, ("unknown", "m"): 1}
    assert parsed.sample[0] == {"member_id": "m1", "age_band": "30-39", "gender": "f"}


def test_shift_jis_bytes_declared_as_utf8_are_refused() -> None:
    with pytest.raises(UploadRejected) as caught:
        parse_upload(csv_text().encode("shift_jis"), parse_media_type("text/csv; charset=UTF-8"))
    assert caught.value.status == 400


def test_tsv_bom_blank_lines_and_quoted_newlines() -> None:
    text = csv_text(sep="\t") + "\r\n" + 'm4\t"a\nb"\t2001\t\n'
    media = parse_media_type("text/tab-separated-values; charset=utf-8")
    parsed = parse_upload(b"\xef\xbb\xbf" + text.encode(), media)
    assert parsed.rows == 4
    assert parsed.cells[("20-29", "unknown")] == 1


def test_empty_file_has_no_header() -> None:
    with pytest.raises(UploadRejected):
        parse_upload(b"", parse_media_type("text/csv"))


def test_missing_columns_count_as_unknown() -> None:
    parsed = parse_upload(b"member_id\nm1\nm2\n", parse_media_type("text/csv"))
    assert parsed.cells == {("unknown", "unknown"): 2}
    assert parsed.sample[1]["member_id"] == "m2"


@pytest.mark.parametrize(
    ("year", "band"),
    [
        ("1990", "30-39"),
        ("1987", "30-39"),
        ("1986", "40-49"),
        ("2026", "0-9"),
        ("1906", "120-129"),
        ("1905", "unknown"),
        ("2030", "unknown"),
        ("", "unknown"),
        ("199O", "unknown"),
        ("１９９０", "unknown"),
    ],
)
def test_age_bands(year: str, band: str) -> None:
    assert age_band(year) == band


def parsed_with(cells: dict[tuple[str, str], int]) -> ParsedUpload:
    parsed = ParsedUpload(rows=sum(cells.values()))
    parsed.cells.update(cells)
    parsed.sample.append({"member_id": "m1", "age_band": "30-39", "gender": "f"})
    return parsed


def test_ok_mode_suppresses_small_cells() -> None:
    parsed = parsed_with({("30-39", "f"): 12, ("40-49", "m"): 9})
    summary = build_summary("up_1", parsed, mode="ok", min_cell_count=10)
    assert summary == {
        "upload_id": "up_1",
        "dimensions": ["age_band", "gender"],
        "cells": [{"values": {"age_band": "30-39", "gender": "f"}, "count": 12}],
    }


def test_small_cells_mode_always_sends_a_cell_under_the_minimum() -> None:
    parsed = parsed_with({("30-39", "f"): 12, ("unknown", "unknown"): 10})
    summary = build_summary("up_1", parsed, mode="small_cells", min_cell_count=10)
    counts = [cell["count"] for cell in summary["cells"]]
    assert counts == [12, 10, 1]
    assert summary["cells"][-1]["values"] == {"age_band": "unknown", "gender": "other"}
    small = parsed_with({("30-39", "f"): 3})
    summary = build_summary("up_1", small, mode="small_cells", min_cell_count=10)
    assert [cell["count"] for cell in summary["cells"]] == [3]


def test_per_person_mode_lists_members() -> None:
    parsed = parsed_with({("30-39", "f"): 12})
    summary = build_summary("up_1", parsed, mode="per_person", min_cell_count=10)
    assert summary["members"] == [{"member_id": "m1", "age_band": "30-39", "gender": "f"}]
    assert len(summary["cells"]) == 1
