"""`gateway clients`."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("clients", help="(not yet)")
    parser.set_defaults(func=lambda args: 0)
