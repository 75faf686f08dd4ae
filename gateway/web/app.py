"""`make_app()`: the aiohttp application, with its dependencies passed in."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.web import (
    routes_clients,
    routes_consent,
    routes_decisions,
    routes_ledger,
    routes_meta,
    routes_transfers,
)
from gateway.web.endpoints import Endpoint, add_routes
from gateway.web.openapi import build_openapi
from gateway.web.problems import access_log_middleware, problem_middleware
from gateway.web.services import SERVICES, Services


def all_endpoints() -> list[Endpoint]:
    return [
        *routes_meta.ENDPOINTS,
        *routes_consent.ENDPOINTS,
        *routes_decisions.ENDPOINTS,
        *routes_clients.ENDPOINTS,
        *routes_ledger.ENDPOINTS,
        *routes_transfers.ENDPOINTS,
    ]


async def _ledger_running(app: web.Application) -> AsyncIterator[None]:
    """The log's group-commit appender and checkpointer run as long as the app; on stop they
    drain what is queued and sign a final checkpoint."""
    ledger = app[SERVICES].ledger
    await ledger.start()
    if await ledger.latest_checkpoint() is None:
        await ledger.checkpoint()  # GET /v1/ledger/checkpoint always has an answer
    yield
    await ledger.stop()


def make_app(services: Services) -> web.Application:
    """The service's application. The caller owns the store's lifetime."""
    app = web.Application(
        middlewares=[access_log_middleware, problem_middleware],
        client_max_size=services.settings.max_json_bytes,
    )
    app[SERVICES] = services
    app.cleanup_ctx.append(_ledger_running)
    endpoints = all_endpoints()
    app[routes_meta.OPENAPI] = build_openapi(endpoints)
    add_routes(app, endpoints)
    return app
