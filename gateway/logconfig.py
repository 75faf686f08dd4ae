"""structlog set-up for the service, and the guard that keeps raw identifiers out of logs.

Logs carry subject keys (keyed HMAC), never emails, phones or names (house rule 10). Code never
passes them; `redact_identifiers` is the second line of defence should a field slip in anyway.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Final

import structlog

# Keys whose values are personal data: replaced before any renderer sees them.
IDENTIFIER_KEYS = frozenset(
    {
        "email",
        "phone",
        "given_name",
        "family_name",
        "name",
        "postal_code",
        "ip_address",
        "address",
        "value",
        "raw",
    }
)
REDACTED = "[redacted]"


def redact_identifiers(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: replace the value of any identifier-named key."""
    for key in IDENTIFIER_KEYS.intersection(event_dict):
        event_dict[key] = REDACTED
    return event_dict


class _StderrLogger(structlog.PrintLogger):
    """Prints to whatever sys.stderr is when it prints, not the stream of when it was made (a
    logger outlives a test's captured stream, and the CLI's main configures before a command
    runs)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def _stderr_logger(*_args: Any) -> _StderrLogger:
    return _StderrLogger()


class StdlibToStructlog(logging.Handler):
    """Libraries' stdlib log records (aiohttp's, asyncio's) as structlog events, so every line
    is in the configured format. A malformed HTTP request is logged as its status and error
    class only: aiohttp's message quotes the offending request bytes, which can be a header's
    API key or a person's email."""

    def emit(self, record: logging.LogRecord) -> None:
        # Imported here, not with the module: the log writer process configures logging too,
        # and has no other use for aiohttp.
        from aiohttp.http_exceptions import HttpProcessingError

        log = structlog.get_logger(record.name)
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            log.warning("bad_http_request", status=exc.code, error=type(exc).__name__)
            return
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # a library's bad format string: keep the template
            message = str(record.msg)
        log.log(record.levelno, message, logger=record.name, exc_info=record.exc_info)


# The settings that configure logging (gateway.settings reads and checks them at start).
LEVEL_ENV: Final = "GATEWAY_LOG_LEVEL"
FORMAT_ENV: Final = "GATEWAY_LOG_FORMAT"
DEFAULT_LEVEL: Final = "info"
DEFAULT_FORMAT: Final = "json"


def configure_logging(*, level: str = DEFAULT_LEVEL, fmt: str = DEFAULT_FORMAT) -> None:
    """Configure structlog once, from settings, in the entry point; route the stdlib's
    records (libraries') through it (StdlibToStructlog)."""
    threshold = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_identifiers,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers[:] = [StdlibToStructlog()]
    root.setLevel(threshold)


def configure_logging_as_parent(environ: Mapping[str, str]) -> None:
    """`configure_logging` in a child process of the service, from the environment it
    inherited, whose values the service checked when it started (gateway.settings reads the
    same variables, with the same defaults). The child needs no Settings: importing them
    loads phonenumbers and pydantic, 13 MB."""
    configure_logging(
        level=environ.get(LEVEL_ENV) or DEFAULT_LEVEL,
        fmt=environ.get(FORMAT_ENV) or DEFAULT_FORMAT,
    )
