"""Settings come from GATEWAY_* variables only, and `gateway serve --help` lists each one."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cli import main
from gateway.errors import ConfigError
from gateway.settings import SETTINGS, Settings


def test_defaults_need_no_configuration() -> None:
    settings = Settings.from_env({})
    assert settings.home == Path("var")
    assert settings.sqlite_path == Path("var/gateway.sqlite3")
    assert settings.database_url == ""
    assert settings.partners_dir == Path("partners")
    assert settings.default_region == "JP"
    assert settings.keys_dir.name == "keys"
    assert settings.log_writer == "process"


def test_variables_override_defaults() -> None:
    settings = Settings.from_env(
        {
            "GATEWAY_HOME": "/srv/gw",
            "GATEWAY_DATABASE_URL": "postgresql://db/gw",
            "GATEWAY_DEFAULT_REGION": "us",
            "GATEWAY_MAX_JSON_BYTES": "1024",
        }
    )
    assert settings.home == Path("/srv/gw")
    assert settings.database_url == "postgresql://db/gw"
    assert settings.default_region == "US"
    assert settings.max_json_bytes == 1024


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("GATEWAY_MAX_JSON_BYTES", "-1"),
        ("GATEWAY_MAX_JSON_BYTES", "lots"),
        ("GATEWAY_DEFAULT_REGION", "JPN"),
        ("GATEWAY_DEFAULT_REGION", "ZZ"),
        ("GATEWAY_LOG_WRITER", "fork"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: value})


def test_serve_help_lists_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for spec in SETTINGS:
        assert spec.env in out
    assert "--host" in out
    assert "--port" in out
