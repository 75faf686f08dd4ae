"""The `gateway` command. Each subcommand group lives in its own module with a `register()`.

The environment is read here (and only here, through `Settings.from_env`), never deeper.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from gateway.cli import (
    clients,
    credentials,
    demo,
    hash,
    keys,
    ledger,
    outbox,
    partners,
    sandbox,
    serve,
    upload,
)
from gateway.errors import ConfigError

COMMAND_MODULES = (
    serve,
    clients,
    keys,
    credentials,
    partners,
    hash,
    ledger,
    sandbox,
    upload,
    outbox,
    demo,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="Third-party data-sharing gateway: consent-checked, logged provisions.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    return code
