"""`gateway partners check [DIR]`: validate the partner contracts the service would load."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.contracts import check_contracts
from gateway.models import japan_date
from gateway.settings import Settings


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "partners",
        help="partner contracts (partners/*.toml): validate them",
        description="Partner contracts: one TOML file per recipient, reviewed by compliance.",
    )
    actions = parser.add_subparsers(dest="partners_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help="validate every contract as `gateway serve` would; exit 1 on any error",
        description=(
            "Load and validate every *.toml contract in DIR with the service's own rules. "
            "Prints 'FILE: FIELD: MESSAGE' per error on stderr and exits 1, "
            "or 'ok: N contracts: ...' and exits 0."
        ),
    )
    check.add_argument(
        "directory",
        nargs="?",
        type=Path,
        metavar="DIR",
        help="contracts folder (default: $GATEWAY_PARTNERS_DIR, else ./partners)",
    )
    check.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    directory: Path = args.directory or Settings.from_env(os.environ).partners_dir
    # Agreements expire at the end of their valid_until day in Japan, as decisions judge them.
    today = japan_date(datetime.now(UTC))
    contracts, errors = check_contracts(directory, today)
    for error in errors:
        print(f"{error.path}: {error.field}: {error.message}", file=sys.stderr)
    if errors:
        return 1
    print(f"ok: {len(contracts)} contracts: {', '.join(sorted(contracts))}")
    return 0
