"""README.md's Configuration table lists every setting `gateway serve --help` lists."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.settings import SETTINGS

README = Path(__file__).resolve().parents[2] / "README.md"


def _configuration_table() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("| `GATEWAY_"))


def test_every_setting_has_a_row() -> None:
    table = _configuration_table()
    listed = set(re.findall(r"`(GATEWAY_[A-Z_]+)`", table))
    assert listed == {spec.env for spec in SETTINGS}
