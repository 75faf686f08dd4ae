"""What request handlers reach through the app: the services, behind one `web.AppKey`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from aiohttp import web

from gateway.contracts import PartnerContract
from gateway.keyring import Keyring
from gateway.ledger.service import Ledger
from gateway.settings import Settings
from gateway.storage import Store

Clock = Callable[[], datetime]


@dataclass(frozen=True, kw_only=True)
class Services:
    settings: Settings
    store: Store
    contracts: Mapping[str, PartnerContract]
    keyring: Keyring
    ledger: Ledger
    clock: Clock

    @cached_property  # contracts are read once at start: derive this once too
    def known_purposes(self) -> frozenset[str]:
        return frozenset(p for c in self.contracts.values() for p in c.purposes)


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
