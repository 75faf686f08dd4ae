"""What request handlers reach through the app: the services, behind one `web.AppKey`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property, partial

from aiohttp import web

from gateway import pseudonym
from gateway.contracts import PartnerContract
from gateway.cooperative import Priority
from gateway.delivery.retry import RetryPolicy
from gateway.delivery.worker import DeliveryWorker
from gateway.keyring import PSEUDONYMIZATION, Keyring
from gateway.ledger.entry_ids import time_uuid
from gateway.ledger.service import Ledger
from gateway.provisions.removal import Removals
from gateway.sandbox import SandboxState
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
        """Every purpose a consent may be recorded for (PartnerContract.consent_purposes)."""
        return frozenset().union(*(c.consent_purposes() for c in self.contracts.values()))

    # Partner credentials by contract credential_ref (None: send no Authorization header).
    credentials: Mapping[str, str] = field(default_factory=dict)
    # The partner simulators' state when the app mounts them (GATEWAY_SANDBOX=on).
    sandbox: SandboxState = field(default_factory=SandboxState)

    # Fraud checks first, an upload's CPU work after (gateway.cooperative): one per service.
    priority: Priority = field(default_factory=Priority)

    # How deliveries retry (tests shorten the waits).
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)

    def credential(self, ref: str) -> str | None:
        return self.credentials.get(ref)

    @staticmethod
    def new_id() -> str:
        """A time-ordered UUID (version 7): job, transfer, delivery and check ids (also partners'
        idempotency keys), which the stores index: see entry_ids.time_uuid."""
        return time_uuid()

    @cached_property
    def removals(self) -> Removals:
        """Queues removals from the partners holding people (APPI Art. 35): one for the app,
        its queueing exclusive per store (Removals)."""
        return Removals(
            store=self.store,
            ledger=self.ledger,
            contracts=self.contracts,
            clock=self.clock,
            new_id=self.new_id,
        )

    @cached_property
    def subject_key(self) -> Callable[[str], str]:
        """The keyed pseudonym of a subject id under the current pseudonymization key."""
        current = self.keyring.current(PSEUDONYMIZATION)
        return partial(pseudonym.subject_key, key_id=current.kid, key=current.material)


SERVICES: web.AppKey[Services] = web.AppKey("services", Services)
# The delivery worker runs with the app (it needs the app's HTTP client session).
DELIVERY: web.AppKey[DeliveryWorker] = web.AppKey("delivery", DeliveryWorker)
