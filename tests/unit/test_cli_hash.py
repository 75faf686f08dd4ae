"""`gateway hash`: JSONL on stdin to one answer per line; CSV files to hashed copies."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import hash as hash_cli
from gateway.cli import main

DANA = "07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3"
JP_MOBILE = hashlib.sha256(b"+819012345678").hexdigest()


def run_jsonl(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stdin: str,
    *args: str,
) -> list[dict[str, Any]]:
    monkeypatch.delenv("GATEWAY_DEFAULT_REGION", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert main(["hash", *args]) == 0
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines()]


def test_jsonl_answers_every_line_in_order(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = [
        {"kind": "email", "value": "dana@example.com"},
        {"kind": "phone", "value": "090-1234-5678"},
        {"kind": "phone", "value": "(415) 555-0100", "region": "US"},
        {"kind": "region_code", "value": "jp"},
        {"kind": "email_sha256", "value": DANA.upper()},
        {"kind": "email", "value": "secret-not-an-email"},
    ]
    stdin = "".join(json.dumps(line) + "\n" for line in lines)
    answers = run_jsonl(monkeypatch, capsys, stdin, "--profile", "google")
    assert answers[0] == {"normalized": "dana@example.com", "sha256": DANA}
    assert answers[1] == {"normalized": "+819012345678", "sha256": JP_MOBILE}
    assert answers[2]["normalized"] == "+14155550100"
    assert answers[3] == {"normalized": "JP", "sha256": None}  # sent in clear
    assert answers[4] == {"normalized": DANA, "sha256": DANA}
    assert answers[5]["error"]["code"] == "invalid_email"
    assert "secret" not in answers[5]["error"]["message"]
    assert len(answers) == len(lines)


def test_bad_lines_become_error_lines(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = "\n".join(
        [
            "not json secret@example.com",
            "",
            "[1, 2]",
            '{"kind": "email"}',
            '{"kind": "email", "value": 42}',
            '{"kind": "ssn", "value": "123-45-6789"}',
            '{"kind": "phone", "value": "090-1234-5678", "region": 81}',
            '{"kind": "phone", "value": "090-1234-5678", "region": "ZZ"}',
            "[" * 100_000,
            '{"kind": "email", "value": "dana@example.com"}',
        ]
    )
    answers = run_jsonl(monkeypatch, capsys, stdin + "\n")
    codes = [a.get("error", {}).get("code") for a in answers]
    assert codes == [
        "invalid_json",
        "invalid_json",
        "invalid_record",
        "invalid_record",
        "invalid_record",
        "unknown_kind",
        "invalid_record",
        "invalid_region",
        "invalid_json",
        None,
    ]
    assert answers[-1]["sha256"] == DANA
    text = json.dumps(answers)
    assert "secret" not in text
    assert "123-45" not in text


def test_invalid_utf8_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    lines = [
        b'{"kind": "email", "value": "\xff@example.com"}\n',
        b'{"kind":"email","value":"dana@example.com"}\n',
    ]
    out = io.StringIO()
    hash_cli.hash_jsonl(lines, out, default_region="JP")
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert answers[0]["error"]["code"] == "invalid_json"
    assert answers[1]["sha256"] == DANA


def test_region_option_and_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = '{"kind": "phone", "value": "(415) 555-0100"}\n'
    assert (
        run_jsonl(monkeypatch, capsys, stdin, "--region", "us")[0]["normalized"] == "+14155550100"
    )
    # Default JP: the same digits are a possible Japanese number, a different person.
    assert run_jsonl(monkeypatch, capsys, stdin)[0]["normalized"] == "+814155550100"
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    monkeypatch.setenv("GATEWAY_DEFAULT_REGION", "US")
    assert main(["hash"]) == 0
    assert json.loads(capsys.readouterr().out)["normalized"] == "+14155550100"


@pytest.mark.parametrize(
    "args",
    [
        ["--profile", "meta"],
        ["--region", "XX"],
        ["--csv", "x.csv", "--columns", "ssn"],
    ],
)
def test_usage_errors(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["hash", *args])
    assert exc.value.code == 2


def test_columns_without_csv_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["hash", "--columns", "email"]) == 2
    assert "--csv" in capsys.readouterr().err


def write_csv(path: Path, rows: list[list[str]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows(rows)


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def test_csv_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "customers.csv"
    write_csv(
        src,
        [
            ["id", "Mail", "phone", "postal_code", "note"],
            ["1", "Dana@Example.com ", "090-1234-5678", "100-0001", "keep me"],
            ["2", "not-an-email", "", "  ", "x"],
            ["3", "dana@example.com"],  # short row: padded
        ],
    )
    code = main(["hash", "--csv", str(src), "--columns", "Mail=email,phone,postal_code"])
    assert code == 0
    out = tmp_path / "customers.hashed.csv"
    rows = read_csv(out)
    assert rows[0] == ["id", "Mail", "phone", "postal_code", "note", "error"]
    assert rows[1] == ["1", DANA, JP_MOBILE, "100-0001", "keep me", ""]
    assert rows[2] == ["2", "", "", "", "x", "Mail:invalid_email;phone:empty;postal_code:empty"]
    assert rows[3] == ["3", DANA, "", "", "", "phone:empty;postal_code:empty"]
    assert "not-an-email" not in out.read_text(encoding="utf-8")
    assert "3 rows, 5 cells rejected" in capsys.readouterr().err
    assert not (tmp_path / "customers.hashed.csv.part").exists()


def test_csv_many_rows_cross_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hash_cli, "CHUNK_ROWS", 7)
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_csv(src, [["email"], *([f"user{i}@example.com"] for i in range(50))])
    assert main(["hash", "--csv", str(src), "--columns", "email", "--out", str(out)]) == 0
    rows = read_csv(out)
    assert len(rows) == 51
    assert rows[50][0] == hashlib.sha256(b"user49@example.com").hexdigest()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("id,phone\n1,2\n", "no column 'email'"),
        ("email,error\nx,y\n", "'error' column"),
        ("", "empty"),
    ],
)
def test_csv_file_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    src = tmp_path / "in.csv"
    src.write_text(content, encoding="utf-8")
    assert main(["hash", "--csv", str(src), "--columns", "email"]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [src]  # no partial output left behind


def test_csv_not_utf8_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.csv"
    src.write_bytes(b"email\n\xff\xfe@example.com\n")
    assert main(["hash", "--csv", str(src), "--columns", "email"]) == 2
    assert main(["hash", "--csv", str(tmp_path / "nope.csv"), "--columns", "email"]) == 2
    assert main(["hash", "--csv", str(src), "--columns", "email", "--out", str(src)]) == 2
    assert list(tmp_path.iterdir()) == [src]


def test_progress_bar_only_on_a_terminal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    write_csv(src, [["email"], ["dana@example.com"]])
    assert (
        hash_cli.hash_csv(src, [("email", "email")], out, default_region="JP", progress=True) == 0
    )
    assert "100%" in capsys.readouterr().err
    assert hash_cli.hash_csv(src, [("email", "email")], out, default_region="JP") == 0
    assert "%" not in capsys.readouterr().err
