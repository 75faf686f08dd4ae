"""`gateway hash`."""

from __future__ import annotations

import argparse
from typing import Any


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("hash", help="(not yet)")
    parser.set_defaults(func=lambda args: 0)
