"""Running the `gateway` command as a real process, on a throw-away home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def gateway_env(tmp_path: Path, partners: Path = REPO / "partners") -> dict[str, str]:
    """This process's environment without any GATEWAY_* setting, homed in `tmp_path`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_HOME=str(tmp_path / "var"),
        GATEWAY_KEYS_DIR=str(tmp_path / "keys"),
        GATEWAY_PARTNERS_DIR=str(partners),
    )
    return env


def run_gateway(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
