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
from gateway.errors import ConfigError, StorageError
from gateway.logconfig import configure_logging

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
    """Run a subcommand. An operator's mistake (settings, keys, contracts, a database that
    cannot be opened, a port or file that cannot be used) is one line on stderr and exit 2,
    never a traceback; the subcommands' own exit codes pass through."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(level="warning", fmt="console")  # stderr: stdout is the command's output
    try:
        code: int = args.func(args)
    except (ConfigError, StorageError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a port in use, a folder that is a file, a path not writable
        where = f": {exc.filename}" if exc.filename else ""
        print(f"gateway: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    return code
