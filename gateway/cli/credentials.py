"""`gateway credentials`: the partner credentials contracts name by `credential_ref`.

    printf %s "$TOKEN" | gateway credentials set google-datamanager
    gateway credentials list

`set` reads the secret from standard input (never from the command line, where it would
show in the process list and shell history) and stores it encrypted; `list` names the refs
stored and whether a contract uses each. The service reads them when it starts.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from gateway.contracts import load_contracts
from gateway.credentials import credentials_path, load_credentials, store_credential
from gateway.keyring import load_keyring
from gateway.runtime import utc_now
from gateway.settings import Settings


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "credentials", help="partner credentials (stored encrypted)"
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    put = actions.add_parser("set", help="store the secret read from stdin under REF")
    put.add_argument("ref", help="a contract's endpoint.credential_ref")
    put.set_defaults(func=_set)
    listing = actions.add_parser("list", help="the refs stored (never the secrets)")
    listing.set_defaults(func=_list)


def _set(args: argparse.Namespace) -> int:
    settings = Settings.from_env(os.environ)
    secret = sys.stdin.read().strip()
    if not secret:
        print("gateway credentials: no secret on standard input", file=sys.stderr)
        return 2
    keyring = load_keyring(settings.keys_dir)
    store_credential(credentials_path(settings.home), keyring, args.ref, secret)
    print(f"stored {args.ref}")
    return 0


def _list(args: argparse.Namespace) -> int:
    settings = Settings.from_env(os.environ)
    stored = load_credentials(credentials_path(settings.home), load_keyring(settings.keys_dir))
    contracts = load_contracts(settings.partners_dir, utc_now().date())
    used = {c.endpoint.credential_ref for c in contracts.values()}
    for ref in sorted(stored.keys() | used):
        state = "stored" if ref in stored else "MISSING"
        print(f"{ref}  {state}{'' if ref in used else '  (no contract uses it)'}")
    return 0
