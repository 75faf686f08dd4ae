"""One frozen Settings object, read once from `GATEWAY_*` variables in the entry point.

`SETTINGS` is the single table of variables: `Settings.from_env()` reads it and
`gateway serve --help` prints it, so the two never drift apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, TypeAlias

from gateway.errors import ConfigError
from gateway.identifiers.regions import ISO_3166_ALPHA2
from gateway.logconfig import DEFAULT_FORMAT, DEFAULT_LEVEL, FORMAT_ENV, LEVEL_ENV

LogWriterMode: TypeAlias = Literal["process", "thread"]
"""Where the SQLite store appends to the transfer log (gateway/storage/sqlite_writer.py)."""
LOG_WRITER_MODES: Final[tuple[LogWriterMode, ...]] = ("process", "thread")


def _default_keys_dir() -> str:
    # The repository's top-level keys/ when running from a checkout; ./keys otherwise.
    checkout_keys = Path(__file__).resolve().parent.parent / "keys"
    return str(checkout_keys) if checkout_keys.is_dir() else "keys"


@dataclass(frozen=True)
class SettingSpec:
    field: str
    env: str
    default: Callable[[], str]
    help: str
    parse: Callable[[str], Any] = str


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def _on_off(raw: str) -> bool:
    if raw.lower() not in ("on", "off"):
        raise ValueError("must be on or off")
    return raw.lower() == "on"


def _one_of(*choices: str) -> Callable[[str], str]:
    """A parser taking one of `choices` (any case), as written in lower case."""

    def parse(raw: str) -> str:
        if raw.lower() not in choices:
            raise ValueError(f"must be one of: {', '.join(choices)}")
        return raw.lower()

    return parse


def _region(raw: str) -> str:
    if raw.upper() not in ISO_3166_ALPHA2:
        raise ValueError("must be an assigned ISO 3166-1 alpha-2 code")
    return raw.upper()


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("home", "GATEWAY_HOME", lambda: "var", "data folder (SQLite database)", Path),
    SettingSpec(
        "keys_dir",
        "GATEWAY_KEYS_DIR",
        _default_keys_dir,
        "keyring folder (created, mode 0700)",
        Path,
    ),
    SettingSpec(
        "database_url",
        "GATEWAY_DATABASE_URL",
        lambda: "",
        "postgresql://... to use PostgreSQL; empty: SQLite under GATEWAY_HOME",
    ),
    SettingSpec(
        "partners_dir", "GATEWAY_PARTNERS_DIR", lambda: "partners", "partner contracts", Path
    ),
    SettingSpec(
        "default_region",
        "GATEWAY_DEFAULT_REGION",
        lambda: "JP",
        "region for phone numbers written without +country code",
        _region,
    ),
    SettingSpec(
        "max_json_bytes",
        "GATEWAY_MAX_JSON_BYTES",
        lambda: str(16 * 1024 * 1024),
        "largest JSON request body (streamed imports and uploads are not limited)",
        _positive_int,
    ),
    SettingSpec(
        "log_origin",
        "GATEWAY_LOG_ORIGIN",
        lambda: "gateway.example.com/transfer-log",
        "transfer-log origin line and signing key name (C2SP checkpoint)",
    ),
    SettingSpec(
        "checkpoint_every",
        "GATEWAY_CHECKPOINT_EVERY",
        lambda: "10000",
        "sign a checkpoint after this many new log entries",
        _positive_int,
    ),
    SettingSpec(
        "checkpoint_seconds",
        "GATEWAY_CHECKPOINT_SECONDS",
        lambda: "60",
        "and at least this often while entries arrive",
        _positive_int,
    ),
    SettingSpec(
        "log_writer",
        "GATEWAY_LOG_WRITER",
        lambda: "process",
        "SQLite only: process makes the transfer log's small appends (fraud checks) in a child "
        "process, off the event loop's interpreter lock; thread makes every append on the "
        "store's writing thread",
        _one_of(*LOG_WRITER_MODES),
    ),
    SettingSpec(
        "sandbox",
        "GATEWAY_SANDBOX",
        lambda: "on",
        "on: serve the partner simulators at /sandbox (the sample contracts point there); "
        "off in production",
        _on_off,
    ),
    SettingSpec(
        "delivery_concurrency",
        "GATEWAY_DELIVERY_CONCURRENCY",
        lambda: "4",
        "partner requests the delivery worker keeps in flight",
        _positive_int,
    ),
    SettingSpec(
        "drain_seconds",
        "GATEWAY_DRAIN_SECONDS",
        lambda: "10",
        "on stop, how long deliveries under way may take to finish",
        _positive_int,
    ),
    SettingSpec(
        "log_level",
        LEVEL_ENV,
        lambda: DEFAULT_LEVEL,
        "debug, info, warning, error",
        _one_of("debug", "info", "warning", "error"),
    ),
    SettingSpec(
        "log_format",
        FORMAT_ENV,
        lambda: DEFAULT_FORMAT,
        "json or console",
        _one_of("json", "console"),
    ),
)


@dataclass(frozen=True, kw_only=True)
class Settings:
    home: Path
    keys_dir: Path
    database_url: str
    partners_dir: Path
    default_region: str
    max_json_bytes: int
    log_origin: str
    checkpoint_every: int
    checkpoint_seconds: int
    log_writer: LogWriterMode
    sandbox: bool
    delivery_concurrency: int
    drain_seconds: int
    log_level: str
    log_format: str

    @property
    def sqlite_path(self) -> Path:
        return self.home / "gateway.sqlite3"

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Settings:
        """Read every setting from `environ`; `overrides` (e.g. tests) win.

        Raises ConfigError naming the variable when a value does not parse.
        """
        values: dict[str, Any] = {}
        for spec in SETTINGS:
            raw = environ.get(spec.env) or spec.default()
            try:
                values[spec.field] = spec.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{spec.env}={raw!r}: {exc}") from exc
        values.update(overrides)
        return cls(**values)


def settings_help() -> str:
    """The environment variables, for `gateway serve --help`."""
    lines = ["environment (read once at start):"]
    for spec in SETTINGS:
        lines.append(f"  {spec.env:<24} {spec.help} (default: {spec.default() or 'empty'})")
    return "\n".join(lines)
