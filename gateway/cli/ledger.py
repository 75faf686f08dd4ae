"""`gateway ledger`: verify the transfer log, export it, make a checkpoint, purge expired content.

`verify` exits 0 when the log verifies, 1 naming the first entry or checkpoint that fails
(including content purged before its retention could end: docs/ledger.md §5.2), 2 when there is
nothing to verify: a folder that is no complete export or, with SQLite, no database under
GATEWAY_HOME. `verify` and `export` never create the database: a mistyped home must not pass
for an empty log.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError
from gateway.keyring import load_keyring
from gateway.ledger.checkpoint import verifier_key
from gateway.ledger.export import (
    entry_line,
    prepare_export,
    read_checkpoints,
    read_leaves,
    read_meta,
)
from gateway.ledger.service import Ledger
from gateway.ledger.store import LedgerStore
from gateway.ledger.verify import Report, Verifier
from gateway.runtime import open_storage, utc_now
from gateway.settings import Settings

CHUNK = 50_000


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("ledger", help="the transfer log")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify", help="recompute the tree and check every checkpoint (exit 1 on failure)"
    )
    verify.add_argument("--offline", type=Path, metavar="DIR", help="verify an export instead")
    verify.add_argument(
        "--key", action="append", default=[], help="trusted verifier key (offline: overrides DIR's)"
    )
    verify.add_argument(
        "--as-of",
        type=_iso_date,
        metavar="YYYY-MM-DD",
        help="a day by which the log was read, to date purges against (default: today, UTC; "
        "for an export, the day it was made or received)",
    )
    verify.set_defaults(func=lambda a: asyncio.run(_verify(a)))
    export = actions.add_parser("export", help="write entries and checkpoints to a new folder")
    export.add_argument("dir", type=Path)
    export.set_defaults(func=lambda a: asyncio.run(_export(a.dir)))
    checkpoint = actions.add_parser("checkpoint", help="sign a checkpoint covering every entry")
    checkpoint.set_defaults(func=lambda a: asyncio.run(_checkpoint()))
    purge = actions.add_parser("purge", help="remove content past its retention date")
    purge.set_defaults(func=lambda a: asyncio.run(_purge()))


def verifier_keys(settings: Settings) -> list[str]:
    # Load, never create: a verifier must not mint the key it then trusts.
    ring = load_keyring(settings.keys_dir)
    keys = [verifier_key(settings.log_origin, pk) for pk in ring.signing_public_keys()]
    if not keys:
        raise ConfigError(f"no log-signing key in {settings.keys_dir}; pass --key VERIFIER_KEY")
    return keys


def _iso_date(text: str) -> date:
    """argparse type: an ISO 8601 calendar date, YYYY-MM-DD."""
    try:
        if len(text) == 10 and text.isascii():
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}")


def summary(report: Report) -> str:
    """What `verify` prints for a log that verified: never more than was checked."""
    text = f"ok: {report.entries} entries, {report.checkpoints} checkpoints verified"
    if not report.purged:
        return text
    dated = report.purged - report.purged_undated
    text += f"; {report.purged} purged: {dated} not before their retention could end"
    if report.purged_undated:
        text += f", {report.purged_undated} undated (no earlier entry's content to date them)"
    return text


def _print(report: Report) -> int:
    if report.failure is not None:
        print(f"FAILED: {report.failure}", file=sys.stderr)
        return 1
    print(summary(report))
    return 0


def existing_log(settings: Settings) -> None:
    """Raises ConfigError when the log is to be read from a SQLite file that is not there
    (opening the store would create it empty). PostgreSQL is not checked: its URL names a
    database the operator made."""
    if not settings.database_url and not settings.sqlite_path.is_file():
        raise ConfigError(
            f"no database at {settings.sqlite_path}; set GATEWAY_HOME to the service's data "
            "folder (or GATEWAY_DATABASE_URL)"
        )


def _verify_offline(directory: Path, keys: list[str], as_of: date) -> int:
    """Raises ConfigError when `directory` is not a complete export."""
    origin, exported_keys = read_meta(directory)
    entries = directory / "entries.jsonl"
    if not entries.is_file():
        raise ConfigError(f"{directory} is not a complete transfer-log export: no {entries.name}")
    verifier = Verifier(
        read_checkpoints(directory), vkeys=keys or exported_keys, origin=origin, as_of=as_of
    )
    try:
        verifier.feed(read_leaves(directory))
    except OSError as exc:
        raise ConfigError(f"{entries}: cannot read it ({exc.strerror})") from exc
    return _print(verifier.finish())


async def verify_store(store: LedgerStore, verifier: Verifier) -> Report:
    size = await store.ledger_size()
    for start in range(0, size, CHUNK):
        if not verifier.feed(await store.ledger_leaves(start, min(start + CHUNK, size))):
            break
    return verifier.finish()


async def _verify(args: argparse.Namespace) -> int:
    settings = Settings.from_env(os.environ)
    as_of: date = args.as_of or utc_now().date()
    if args.offline is not None:
        return _verify_offline(args.offline, args.key, as_of)
    vkeys = args.key or verifier_keys(settings)
    existing_log(settings)
    store = await open_storage(settings)
    try:
        checkpoints = await store.ledger_checkpoints()
        verifier = Verifier(checkpoints, vkeys=vkeys, origin=settings.log_origin, as_of=as_of)
        return _print(await verify_store(store, verifier))
    finally:
        await store.close()


async def _export(directory: Path) -> int:
    settings = Settings.from_env(os.environ)
    existing_log(settings)
    store = await open_storage(settings)
    try:
        checkpoints = await store.ledger_checkpoints()
        path = prepare_export(
            directory, checkpoints, vkeys=verifier_keys(settings), origin=settings.log_origin
        )
        size = await store.ledger_size()
        with path.open("w") as out:
            for start in range(0, size, CHUNK):
                for leaf in await store.ledger_leaves(start, min(start + CHUNK, size)):
                    out.write(entry_line(leaf))
    finally:
        await store.close()
    print(f"exported {size} entries and {len(checkpoints)} checkpoints to {directory}")
    return 0


async def _checkpoint() -> int:
    settings = Settings.from_env(os.environ)
    store = await open_storage(settings)
    ring = load_keyring(settings.keys_dir)  # signing with a fresh key would fork the log
    ledger = Ledger(store=store, keyring=ring, origin=settings.log_origin, clock=utc_now)
    try:
        checkpoint = await ledger.checkpoint()
    finally:
        await store.close()
    sys.stdout.write(checkpoint.note)
    return 0


async def _purge() -> int:
    store = await open_storage(Settings.from_env(os.environ))
    try:
        removed = await store.ledger_purge(utc_now().date())
    finally:
        await store.close()
    print(f"purged the content of {removed} entries past retention; their leaf hashes remain")
    return 0
