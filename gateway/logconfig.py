"""structlog set-up for the service, and the guard that keeps raw identifiers out of logs.

Logs carry subject keys (keyed HMAC), never emails, phones or names (house rule 10). Code never
passes them; `redact_identifiers` is the second line of defence should a field slip in anyway.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

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


def configure_logging(*, level: str = "info", fmt: str = "json") -> None:
    """Configure structlog once, from settings, in the entry point."""
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
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
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
