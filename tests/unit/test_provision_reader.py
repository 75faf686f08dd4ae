"""Reading a provision's streamed body (gateway/provisions/reader.py): CSV and JSONL lines,
as spreadsheet programs and scripts write them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Literal

import pytest

from gateway.consent_import import MAX_LINE_BYTES
from gateway.errors import ValidationFailed
from gateway.provisions.reader import read_records

COLUMNS = frozenset({"email", "phone"})
BOM = "\ufeff".encode()


async def _stream(parts: Sequence[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read(
    parts: Sequence[bytes], fmt: Literal["jsonl", "csv"]
) -> list[tuple[int, dict[str, object] | str]]:
    return [line async for line in read_records(_stream(parts), fmt, columns=COLUMNS)]


EXCEL_CSV = (
    BOM + b"subject_id,email,phone\r\n"
    b'cust-1,"A.B@Example.com",090-1234-5678\r\n'
    b'"cust-2","x@y.com, z",\r\n'
)
EXPECTED = [
    (1, {"subject_id": "cust-1", "email": "A.B@Example.com", "phone": "090-1234-5678"}),
    (2, {"subject_id": "cust-2", "email": "x@y.com, z", "phone": ""}),
]


async def test_a_spreadsheet_csv_with_a_byte_order_mark_crlf_and_quotes() -> None:
    assert await read([EXCEL_CSV], "csv") == EXPECTED


@pytest.mark.parametrize("cut", [1, 2, 3, 4, 20])
async def test_the_byte_order_mark_split_across_chunks(cut: int) -> None:
    assert await read([EXCEL_CSV[:cut], EXCEL_CSV[cut:]], "csv") == EXPECTED


async def test_a_header_only_csv_with_a_byte_order_mark_and_no_newline() -> None:
    """The header is read (the mark skipped), and a body without a record is refused."""
    with pytest.raises(ValidationFailed, match="holds no record"):
        await read([BOM + b"subject_id,email"], "csv")


@pytest.mark.parametrize(
    ("parts", "fmt", "why"),
    [
        ([], "csv", "must name the columns"),
        ([b""], "jsonl", "holds no record"),
        ([b"\r\n\n  \n"], "jsonl", "holds no record"),
        ([b"subject_id,email\r\n\r\n"], "csv", "holds no record"),
    ],
)
async def test_a_body_without_records_is_refused(
    parts: list[bytes], fmt: Literal["jsonl", "csv"], why: str
) -> None:
    """As `records: []` in a JSON body: an empty upload is a mistake, not a job of nothing."""
    with pytest.raises(ValidationFailed, match=why):
        await read(parts, fmt)


async def test_a_column_named_twice_is_refused() -> None:
    """Which cell would win is a guess: one value would be lost without a word."""
    with pytest.raises(ValidationFailed, match="twice") as caught:
        await read([b"subject_id,email,email\r\ncust-1,a@b.c,d@e.f\r\n"], "csv")
    assert [e.detail for e in caught.value.errors] == ["column named twice: 'email'"]


async def test_a_header_cell_that_is_no_column_name_is_not_repeated() -> None:
    """A file without a header row: its first line is a person's data."""
    with pytest.raises(ValidationFailed) as caught:
        await read([b"subject_id,hanako.sato@example.jp\r\n"], "csv")
    assert "hanako" not in str([e.detail for e in caught.value.errors])


async def test_jsonl_with_a_byte_order_mark() -> None:
    body = BOM + b'{"subject_id": "cust-1", "email": "a@b.c"}\n{"subject_id": "cust-2"}\n'
    assert await read([body], "jsonl") == [
        (1, {"subject_id": "cust-1", "email": "a@b.c"}),
        (2, {"subject_id": "cust-2"}),
    ]


async def test_only_a_leading_byte_order_mark_is_skipped() -> None:
    # U+FEFF later in the body is data: the line that holds it is reported, not repaired.
    body = b'{"subject_id": "cust-1"}\n' + BOM + b'{"subject_id": "cust-2"}\n'
    assert await read([body], "jsonl") == [
        (1, {"subject_id": "cust-1"}),
        (2, "line is not valid JSON"),
    ]


async def test_a_header_without_subject_id_is_refused_whole() -> None:
    with pytest.raises(ValidationFailed, match="subject_id"):
        await read([BOM + b"email,phone\r\na@b.c,\r\n"], "csv")


@pytest.mark.parametrize("piece", [1 << 20, 1000, 7])
async def test_a_long_line_is_refused_however_the_body_is_chunked(piece: int) -> None:
    """The line limit held only for lines that spanned two chunks: the same file was read or
    refused depending on how the network cut it."""
    long = b'{"subject_id": "cust-1", "email": "' + b"a" * MAX_LINE_BYTES + b'@b.c"}'
    body = long + b'\n{"subject_id": "cust-2"}\n'
    parts = [body[i : i + piece] for i in range(0, len(body), piece)]
    assert await read(parts, "jsonl") == [
        (1, f"line longer than {MAX_LINE_BYTES} bytes"),
        (2, {"subject_id": "cust-2"}),
    ]


async def test_a_key_named_twice_is_a_broken_line_not_the_last_value() -> None:
    body = (
        b'{"subject_id": "cust-1", "email": "a@b.c", "subject_id": "cust-2"}\n'
        b'{"subject_id": "cust-3", "email": "x\\":y@b.c"}\n'  # a `":` inside a value
        b'{"subject_id": "cust-4", "email": "a@b.c", "extra": {"k": 1, "k": 2}}\n'
    )
    lines = await read([body], "jsonl")
    assert lines[0] == (1, "line names a key twice: which value counts is a guess")
    assert lines[1] == (2, {"subject_id": "cust-3", "email": 'x":y@b.c'})
    assert lines[2] == (3, "line names a key twice: which value counts is a guess")


async def test_a_body_that_arrives_at_once_is_read_in_slices() -> None:
    """One chunk of 20,000 lines takes tens of milliseconds to read: the loop gets pauses
    (gateway.cooperative), and the records are the same."""
    body = b"subject_id,email\n" + b"".join(
        b"cust-%d,p%d@example.com\n" % (n, n) for n in range(20_000)
    )
    pauses = 0

    async def pause() -> None:
        nonlocal pauses
        pauses += 1

    paused = [
        line async for line in read_records(_stream([body]), "csv", columns=COLUMNS, pause=pause)
    ]
    assert pauses > 0
    assert paused == await read([body], "csv")
    assert paused[-1] == (20_000, {"subject_id": "cust-19999", "email": "p19999@example.com"})
