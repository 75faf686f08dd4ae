"""A real gateway on a loopback socket, over each store backend, with one client per role."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from gateway.contracts import load_contracts
from gateway.keyring import init_keyring
from gateway.ledger.service import Ledger
from gateway.models import Role
from gateway.settings import Settings
from gateway.storage import Store
from gateway.web import make_app
from gateway.web.auth import mint_client
from gateway.web.services import Services

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SENDER_PARTNERS = ("google-customer-match",)
MAX_JSON_BYTES = 256 * 1024


@dataclass
class Api:
    http: TestClient[Any, Any]
    keys: dict[Role, str]
    client_ids: dict[Role, str]
    services: Services

    def auth(self, role: Role | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"} if role else {}

    async def call(
        self,
        method: str,
        path: str,
        role: Role | None = Role.ADMIN,
        *,
        json: Any = None,
        data: bytes | str | None = None,
        headers: dict[str, str] | None = None,
    ) -> ClientResponse:
        merged = {**self.auth(role), **(headers or {})}
        return await self.http.request(method, path, json=json, data=data, headers=merged)


@pytest.fixture
async def api(store: Store, tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings.from_env(
        {},
        home=tmp_path,
        keys_dir=tmp_path / "keys",
        partners_dir=REPO / "partners",
        max_json_bytes=MAX_JSON_BYTES,
    )
    keyring, _ = init_keyring(settings.keys_dir, NOW)
    ledger = Ledger(store=store, keyring=keyring, origin=settings.log_origin, clock=lambda: NOW)
    services = Services(
        settings=settings,
        store=store,
        contracts=load_contracts(settings.partners_dir, NOW.date()),
        keyring=keyring,
        ledger=ledger,
        clock=lambda: NOW,
    )
    keys: dict[Role, str] = {}
    client_ids: dict[Role, str] = {}
    for role in Role:
        partners = SENDER_PARTNERS if role is Role.SENDER else ()
        record, key = mint_client(name=f"test-{role}", role=role, partners=partners, now=NOW)
        await store.create_client(record)
        keys[role] = key
        client_ids[role] = record.client_id
    server = TestServer(make_app(services), host="127.0.0.1")
    async with TestClient(server) as http:
        yield Api(http=http, keys=keys, client_ids=client_ids, services=services)
