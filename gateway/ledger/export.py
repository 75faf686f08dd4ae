"""`gateway ledger export DIR` and what `gateway ledger verify --offline DIR` reads back.

Layout, all UTF-8 text, so an auditor can check it with any RFC 9162 verifier:

    DIR/origin.txt                 the log's origin line
    DIR/verifier-keys.txt          one C2SP verifier key per line (current and retired)
    DIR/checkpoints/<size>.note    every stored signed checkpoint, byte for byte
    DIR/entries.jsonl              one line per entry, by index:
                                   {"index": I, "leaf_hash": base64, "leaf": base64 | null}
                                   (leaf null: the content is gone; verify checks,
                                   as far as the log can date it, that it did not go
                                   before its retention could end: docs/ledger.md §5.2)
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from gateway.errors import ConfigError
from gateway.ledger.checkpoint import CheckpointError, parse_checkpoint
from gateway.ledger.store import StoredCheckpoint, StoredLeaf


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def prepare_export(
    directory: Path,
    checkpoints: Sequence[StoredCheckpoint],
    *,
    vkeys: Sequence[str],
    origin: str,
) -> Path:
    """Write everything but the entries; returns the entries file's path.

    Refuses a non-empty folder (ConfigError): an export is never mixed with an older one."""
    if directory.exists() and any(directory.iterdir()):
        raise ConfigError(f"{directory} is not empty; export into a new folder")
    (directory / "checkpoints").mkdir(parents=True, exist_ok=True)
    (directory / "origin.txt").write_text(origin + "\n")
    (directory / "verifier-keys.txt").write_text("".join(k + "\n" for k in vkeys))
    for cp in checkpoints:
        (directory / "checkpoints" / f"{cp.size}.note").write_text(cp.note)
    return directory / "entries.jsonl"


def entry_line(leaf: StoredLeaf) -> str:
    row = {
        "index": leaf.index,
        "leaf_hash": _b64(leaf.leaf_hash),
        "leaf": _b64(leaf.leaf) if leaf.leaf is not None else None,
    }
    return json.dumps(row) + "\n"


def _checkpoint_file(path: Path) -> StoredCheckpoint:
    note = path.read_text()
    body = note[: note.find("\n\n") + 1] if "\n\n" in note else note
    try:
        parsed = parse_checkpoint(body)
        size, root = parsed.size, parsed.root
    except CheckpointError:
        # Unparseable: keep it, so verification names it instead of skipping it.
        size, root = int(path.stem) if path.stem.isdigit() else -1, b""
    return StoredCheckpoint(size=size, root=root, note=note, created_at=datetime.now(UTC))


def read_checkpoints(directory: Path) -> list[StoredCheckpoint]:
    return [_checkpoint_file(p) for p in sorted((directory / "checkpoints").glob("*.note"))]


def read_leaves(directory: Path) -> Iterator[StoredLeaf]:
    """Stream the exported entries. Raises ConfigError naming a malformed line."""
    with (directory / "entries.jsonl").open() as lines:
        for number, line in enumerate(lines, start=1):
            try:
                row = json.loads(line)
                leaf = row["leaf"]
                yield StoredLeaf(
                    index=int(row["index"]),
                    leaf_hash=base64.b64decode(row["leaf_hash"], validate=True),
                    leaf=base64.b64decode(leaf, validate=True) if leaf is not None else None,
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"entries.jsonl line {number} is malformed") from exc


def read_meta(directory: Path) -> tuple[str, list[str]]:
    """The export's origin and verifier keys. Raises ConfigError if the folder is no export."""
    try:
        origin = (directory / "origin.txt").read_text().strip()
        vkeys = (directory / "verifier-keys.txt").read_text().split()
    except OSError as exc:
        raise ConfigError(f"{directory} is not a transfer-log export ({exc.strerror})") from exc
    return origin, vkeys
