"""`gateway hash`: normalize and hash identifiers as they would be sent, from JSONL or a CSV file.

JSONL (default): one `{"kind": FIELD, "value": STR, "region": OPTIONAL}` per stdin line, one
answer per line on stdout, in order: `{"normalized": STR, "sha256": HEX or null}` or
`{"error": {"code": CODE, "message": STR}}`. Bad input never stops the stream and an error
never echoes the value. CSV: `--csv FILE --columns email,phone` writes a copy of FILE with each
named column replaced by what would be sent, plus an `error` column naming the cells rejected.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from gateway.identifiers import KINDS, PROFILES, Rejected, UnknownKind, hash_many
from gateway.identifiers import normalize_and_hash as _normalize_and_hash
from gateway.identifiers.regions import normalize_region
from gateway.settings import Settings

CHUNK_ROWS = 4096  # CSV rows hashed per column at a time: the bulk path, bounded memory
_RECORD_SHAPE = 'each line must be a JSON object {"kind": FIELD, "value": STRING[, "region": CC]}'


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "hash",
        help="normalize and hash identifiers (JSONL on stdin, or a CSV file)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="google")
    parser.add_argument(
        "--region",
        type=_region_arg,
        help="region for phone numbers without +country code (default: $GATEWAY_DEFAULT_REGION, "
        "else JP)",
    )
    parser.add_argument("--csv", type=Path, metavar="FILE", help="hash this CSV file instead")
    parser.add_argument(
        "--columns",
        type=_columns_arg,
        metavar="COL[=KIND],...",
        help=f"CSV columns to replace; a column's kind is its name unless given: {_kinds()}",
    )
    parser.add_argument("--out", type=Path, help="CSV output (default: FILE with .hashed.csv)")
    parser.set_defaults(func=_run)


def _kinds() -> str:
    return ", ".join(sorted(KINDS))


def _region_arg(raw: str) -> str:
    region = normalize_region(raw)
    if isinstance(region, Rejected):
        raise argparse.ArgumentTypeError("must be an ISO 3166-1 alpha-2 code, e.g. JP")
    return region


def _columns_arg(raw: str) -> list[tuple[str, str]]:
    columns = []
    for item in raw.split(","):
        name, _, kind = item.strip().partition("=")
        kind = kind.strip() or name
        if kind not in KINDS:
            raise argparse.ArgumentTypeError(f"unknown kind {kind!r}; kinds: {_kinds()}")
        columns.append((name, kind))
    return columns


def _run(args: argparse.Namespace) -> int:
    region: str = args.region or Settings.from_env(os.environ).default_region
    if args.csv is None:
        if args.columns or args.out:
            print("gateway hash: --columns and --out need --csv", file=sys.stderr)
            return 2
        source = getattr(sys.stdin, "buffer", sys.stdin)  # bytes: bad UTF-8 is one bad line
        hash_jsonl(source, sys.stdout, default_region=region)
        return 0
    if not args.columns:
        print("gateway hash: --csv needs --columns", file=sys.stderr)
        return 2
    out: Path = args.out or args.csv.with_suffix(".hashed.csv")
    return hash_csv(
        args.csv, args.columns, out, default_region=region, progress=sys.stderr.isatty()
    )


# JSONL ------------------------------------------------------------------------------------------


def hash_jsonl(lines: Iterable[bytes | str], out: TextIO, *, default_region: str) -> None:
    """One answer line on `out` per line of `lines`, in order; never raises on bad input."""
    for line in lines:
        out.write(json.dumps(answer(line, default_region=default_region)) + "\n")
    out.flush()


def answer(line: bytes | str, *, default_region: str) -> dict[str, Any]:
    """The answer to one JSONL record: the normalized value and hash, or an error."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):  # ValueError covers bad JSON and bad UTF-8
        return _error("invalid_json", "the line is not valid JSON in UTF-8")
    if not isinstance(record, dict):
        return _error("invalid_record", _RECORD_SHAPE)
    kind, value, region = record.get("kind"), record.get("value"), record.get("region")
    if not (isinstance(kind, str) and isinstance(value, str)):
        return _error("invalid_record", _RECORD_SHAPE)
    if region is not None and not isinstance(region, str):
        return _error("invalid_record", _RECORD_SHAPE)
    try:
        result = _normalize_and_hash(kind, value, region=region, default_region=default_region)
    except UnknownKind:
        return _error("unknown_kind", f"kind must be one of: {_kinds()}")
    if isinstance(result, Rejected):
        return _error(result.code, result.message)
    return {"normalized": result.normalized, "sha256": result.sha256}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": str(code), "message": message}}


# CSV --------------------------------------------------------------------------------------------


def hash_csv(
    src: Path,
    columns: list[tuple[str, str]],
    out: Path,
    *,
    default_region: str,
    progress: bool = False,
) -> int:
    """Write `out`: `src` with each named column replaced and an `error` column. Exit code.

    Written to `out` + ".part" and renamed at the end, so a stopped run leaves no file that
    looks complete. Errors about the file itself (missing, not UTF-8, columns absent) go to
    stderr with exit code 2; rejected cells never stop the run.
    """
    if out.resolve() == src.resolve():
        print("gateway hash: --out must differ from the input file", file=sys.stderr)
        return 2
    partial = out.with_name(out.name + ".part")
    try:
        with (
            src.open(encoding="utf-8-sig", newline="") as inp,
            partial.open("w", encoding="utf-8", newline="") as dst,
        ):
            meter = _Progress(src.stat().st_size, inp, enabled=progress)
            rows, rejected = _copy_hashed(
                csv.reader(inp), csv.writer(dst), columns, default_region, meter
            )
            meter.finish()
        partial.replace(out)
    except (OSError, UnicodeDecodeError, csv.Error, _BadFile) as exc:
        partial.unlink(missing_ok=True)
        print(f"gateway hash: {file_problem(exc, src=src, out=out)}", file=sys.stderr)
        return 2
    print(f"gateway hash: {rows} rows, {rejected} cells rejected -> {out}", file=sys.stderr)
    return 0


class _BadFile(Exception):
    pass


def file_problem(exc: Exception, *, src: Path, out: Path) -> str:
    """What went wrong, naming the file it went wrong with: `out` when its folder is missing or
    not writable, else `src` (an I/O error of neither, say a full disk, names both)."""
    if not isinstance(exc, OSError):
        return f"{src}: {exc}"
    reason = exc.strerror or type(exc).__name__
    paths = {str(name) for name in (exc.filename, exc.filename2) if name is not None}
    if str(src) in paths:
        return f"{src}: {reason}"
    if paths & {str(out), str(out.with_name(out.name + ".part"))}:
        return f"cannot write {out}: {reason}"
    return f"{src} -> {out}: {reason}"


def _copy_hashed(
    reader: Iterator[list[str]],
    writer: Any,
    columns: list[tuple[str, str]],
    default_region: str,
    meter: _Progress,
) -> tuple[int, int]:
    header = next(reader, None)
    if header is None:
        raise _BadFile("the file is empty: no header row")
    missing = [name for name, _ in columns if name not in header]
    if missing:
        # Never echo the header: a file without one starts with a person's data.
        raise _BadFile(
            f"no column {missing[0]!r} in the header row (its {len(header)} cells are not shown: "
            "in a file without a header row they are a person's data)"
        )
    if "error" in header:
        raise _BadFile("it already has an 'error' column")
    targets = [(header.index(name), name, kind) for name, kind in columns]
    writer.writerow([*header, "error"])
    rows = rejected = 0
    for chunk in _chunks(reader, len(header)):
        errors = _hash_chunk(chunk, targets, default_region)
        rejected += sum(len(e) for e in errors)
        writer.writerows([*row, ";".join(e)] for row, e in zip(chunk, errors, strict=True))
        rows += len(chunk)
        meter.update(rows)
    return rows, rejected


def _chunks(reader: Iterator[list[str]], width: int) -> Iterator[list[list[str]]]:
    """Rows in chunks, each made exactly as wide as the header (short rows padded)."""
    chunk: list[list[str]] = []
    for row in reader:
        chunk.append((row + [""] * (width - len(row)))[:width])
        if len(chunk) == CHUNK_ROWS:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _hash_chunk(
    chunk: list[list[str]], targets: list[tuple[int, str, str]], default_region: str
) -> list[list[str]]:
    """Replace the target cells of `chunk` in place; each row's `column:code` errors."""
    errors: list[list[str]] = [[] for _ in chunk]
    for index, name, kind in targets:
        results = hash_many(kind, [row[index] for row in chunk], default_region=default_region)
        for row, row_errors, result in zip(chunk, errors, results, strict=True):
            if isinstance(result, Rejected):
                row[index] = ""  # never the raw value of a cell that failed
                row_errors.append(f"{name}:{result.code}")
            else:
                row[index] = result
    return errors


class _Progress:
    """A one-line progress bar on stderr, from the input's byte position; off unless a tty."""

    def __init__(self, total: int, inp: TextIO, *, enabled: bool, width: int = 30) -> None:
        self.total, self.inp, self.enabled, self.width = max(total, 1), inp, enabled, width
        self.last, self.rows = 0.0, 0

    def update(self, rows: int, *, final: bool = False) -> None:
        self.rows = rows
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.2 and not final):
            return
        self.last = now
        done = 1.0 if final else min(self.inp.buffer.tell() / self.total, 1.0)  # read-ahead
        bar = "#" * int(done * self.width)
        sys.stderr.write(f"\r[{bar:<{self.width}}] {done:4.0%} {rows:,} rows")
        sys.stderr.flush()

    def finish(self) -> None:
        if self.enabled:
            self.update(self.rows, final=True)
            sys.stderr.write("\n")
