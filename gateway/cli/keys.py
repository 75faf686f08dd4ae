"""`gateway keys`: create the keyring, rotate a key, show key ids.

A keys folder that is a file, a key file that cannot be read (a link to nothing) and, for
`show`, a folder that is missing or holds no key are one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from gateway.errors import ConfigError
from gateway.keyring import PURPOSES, init_keyring, load_keyring, new_key, write_key
from gateway.runtime import utc_now
from gateway.settings import Settings


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("keys", help="manage the local keyring")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    init = actions.add_parser("init", help="create any missing key (also done on first serve)")
    init.set_defaults(func=_init)
    rotate = actions.add_parser("rotate", help="add a new current key; old ones stay readable")
    rotate.add_argument("purpose", choices=PURPOSES)
    rotate.set_defaults(func=_rotate)
    show = actions.add_parser("show", help="list key ids (never key material)")
    show.set_defaults(func=_show)


def _init(args: argparse.Namespace) -> int:
    settings = Settings.from_env(os.environ)
    _, created = init_keyring(settings.keys_dir, utc_now())
    for key in created:
        print(f"created {key.purpose} key {key.kid}")
    return _show(args)


def _rotate(args: argparse.Namespace) -> int:
    settings = Settings.from_env(os.environ)
    key = new_key(args.purpose, utc_now())
    write_key(settings.keys_dir, key)
    print(f"{args.purpose}: new current key {key.kid}")
    return 0


def _show(args: argparse.Namespace) -> int:
    """Raises ConfigError when there is no keyring to show: a mistyped GATEWAY_KEYS_DIR must
    not look like a keyring without keys."""
    keys_dir = Settings.from_env(os.environ).keys_dir
    if not keys_dir.exists():
        raise ConfigError(f"no keys folder at {keys_dir}; create one with `gateway keys init`")
    ring = load_keyring(keys_dir)  # raises ConfigError for a file
    if not ring.keys:
        raise ConfigError(f"no keys in {keys_dir}; create them with `gateway keys init`")
    for purpose in PURPOSES:
        keys = ring.of(purpose)
        for i, key in enumerate(keys):
            state = "current" if i == len(keys) - 1 else "retired"
            print(
                f"{purpose:<17} {key.kid}  {key.algorithm:<12} {key.created_at:%Y-%m-%d}  {state}"
            )
    return 0
