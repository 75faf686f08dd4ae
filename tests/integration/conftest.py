"""A real gateway on a loopback socket, over each store backend, with one client per role."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer

from gateway.contracts import load_contracts
from gateway.delivery.retry import RetryPolicy
from gateway.keyring import init_keyring
from gateway.ledger.service import Ledger
from gateway.models import Role
from gateway.runtime import utc_now
from gateway.sandbox import SandboxState, sandbox_server
from gateway.settings import Settings
from gateway.storage import Store
from gateway.web import make_app
from gateway.web.auth import mint_client
from gateway.web.routes_meta import OPENAPI
from gateway.web.services import Services

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
SENDER_PARTNERS = ("google-customer-match",)
MAX_JSON_BYTES = 256 * 1024


class Documented:
    """Every answer the app gives in a test is one its /openapi.json declares for that route
    and method: a status the code returns but the document omits fails the test that saw it
    (independent clients are generated from the document)."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.undocumented: set[tuple[str, str, int]] = set()
        app.middlewares.insert(0, self._observe)

    @web.middleware
    async def _observe(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        response = await handler(request)
        route = request.match_info.route.resource
        operations = self.app[OPENAPI]["paths"].get(route.canonical if route else "", {})
        operation = operations.get(request.method.lower())
        if operation is not None and str(response.status) not in operation["responses"]:
            self.undocumented.add(
                (request.method, route.canonical if route else "", response.status)
            )
        return response

    def check(self) -> None:
        assert not self.undocumented, f"answers /openapi.json does not declare: {self.undocumented}"


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
    documented = Documented(make_app(services))
    async with TestClient(TestServer(documented.app, host="127.0.0.1")) as http:
        yield Api(http=http, keys=keys, client_ids=client_ids, services=services)
    documented.check()


@dataclass
class Live:
    """A gateway whose partner contracts point at a sandbox on its own loopback socket."""

    api: Api
    sandbox: SandboxState
    sandbox_url: str


def contracts_pointing_at(sandbox_url: str, folder: Path) -> Path:
    """The sample contracts, copied to `folder` with their endpoint URLs on `sandbox_url`
    (what an operator does to reach a real partner: change the contract's endpoint)."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in (REPO / "partners").glob("*.toml"):
        text = source.read_text(encoding="utf-8")
        (folder / source.name).write_text(
            text.replace("http://127.0.0.1:8080/sandbox", sandbox_url), encoding="utf-8"
        )
    return folder


FAST_RETRIES = RetryPolicy(max_attempts=8, initial_s=0.01, max_s=0.2, jitter_s=0.01)


@pytest.fixture
async def live(store: Store, tmp_path: Path) -> AsyncIterator[Live]:
    state = SandboxState(seed=7)
    async with sandbox_server(state) as sandbox_url:
        settings = Settings.from_env(
            {},
            home=tmp_path,
            keys_dir=tmp_path / "keys",
            partners_dir=contracts_pointing_at(sandbox_url, tmp_path / "partners"),
            max_json_bytes=MAX_JSON_BYTES,
            sandbox=False,
        )
        keyring, _ = init_keyring(settings.keys_dir, NOW)
        ledger = Ledger(store=store, keyring=keyring, origin=settings.log_origin, clock=utc_now)
        services = Services(
            settings=settings,
            store=store,
            contracts=load_contracts(settings.partners_dir, NOW.date()),
            keyring=keyring,
            ledger=ledger,
            clock=utc_now,
            retry_policy=FAST_RETRIES,
        )
        keys: dict[Role, str] = {}
        client_ids: dict[Role, str] = {}
        for role in Role:
            partners = SENDER_PARTNERS if role is Role.SENDER else ()
            record, key = mint_client(name=f"test-{role}", role=role, partners=partners, now=NOW)
            await store.create_client(record)
            keys[role] = key
            client_ids[role] = record.client_id
        documented = Documented(make_app(services))
        async with TestClient(TestServer(documented.app, host="127.0.0.1")) as http:
            api = Api(http=http, keys=keys, client_ids=client_ids, services=services)
            yield Live(api=api, sandbox=state, sandbox_url=sandbox_url)
        documented.check()
