"""Bootstrap: from Settings to running Services (contracts, keyring, store), and back down.

Entry points (`gateway serve`, `gateway clients`, ...) call these; nothing deeper reads the
environment or the clock directly.
"""

from __future__ import annotations

from datetime import UTC, datetime

import structlog

from gateway.contracts import load_contracts
from gateway.credentials import credentials_path, load_credentials
from gateway.errors import ConfigError
from gateway.keyring import LOG_SIGNING, PSEUDONYMIZATION, init_keyring, load_keyring
from gateway.ledger.service import Ledger
from gateway.models import japan_date
from gateway.settings import Settings
from gateway.storage import Store
from gateway.storage.factory import open_store
from gateway.web.services import Services

log = structlog.get_logger("gateway")


def utc_now() -> datetime:
    return datetime.now(UTC)


async def open_storage(settings: Settings) -> Store:
    """Open the configured store (migrations applied). Raises ConfigError, StorageError."""
    return await open_store(
        database_url=settings.database_url,
        sqlite_path=settings.sqlite_path,
        log_writer=settings.log_writer,
    )


async def _no_fork(store: Store, settings: Settings) -> None:
    """Keys are made on first start only: a database that already holds a transfer log must
    come with the keyring that signed it. A new signing key would fork the log (its next
    checkpoint verifies under no key a verifier holds) and a new pseudonymization key would key
    every person anew. Raises ConfigError when the keys folder lacks a key the log needs."""
    ring = load_keyring(settings.keys_dir)
    missing = [purpose for purpose in (LOG_SIGNING, PSEUDONYMIZATION) if not ring.of(purpose)]
    if missing and await store.ledger_size() > 0:
        raise ConfigError(
            f"{settings.keys_dir}: no {' or '.join(missing)} key, but the database already "
            "holds a transfer log: a new key would fork the log and key every person anew; "
            "set GATEWAY_KEYS_DIR to the keyring this log was written with"
        )


async def open_services(settings: Settings) -> Services:
    """Load contracts and keys, then open the store.

    Raises ContractError on a bad contract (the service must not start), ConfigError on a bad
    keyring, StorageError when the database cannot be opened.
    """
    now = utc_now()
    contracts = load_contracts(settings.partners_dir, japan_date(now))  # as decisions judge
    store = await open_storage(settings)
    try:
        await _no_fork(store, settings)
        keyring, created = init_keyring(settings.keys_dir, now)
    except BaseException:
        await store.close()
        raise
    for key in created:
        log.info("key_created", purpose=key.purpose, kid=key.kid, keys_dir=str(settings.keys_dir))
    ledger = Ledger(
        store=store,
        keyring=keyring,
        origin=settings.log_origin,
        clock=utc_now,
        checkpoint_every=settings.checkpoint_every,
        checkpoint_seconds=settings.checkpoint_seconds,
    )
    log.info(
        "services_ready",
        partners=sorted(contracts),
        backend="postgresql" if settings.database_url else "sqlite",
    )
    credentials = load_credentials(credentials_path(settings.home), keyring)
    missing = sorted({c.endpoint.credential_ref for c in contracts.values()} - set(credentials))
    if missing:  # the sandbox needs none; a real partner refuses requests without them
        log.warning("credentials_missing", refs=missing)
    return Services(
        settings=settings,
        store=store,
        contracts=contracts,
        keyring=keyring,
        ledger=ledger,
        clock=utc_now,
        credentials=credentials,
    )
