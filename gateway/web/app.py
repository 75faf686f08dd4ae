"""`make_app()`: the aiohttp application, with its dependencies passed in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from gateway.delivery.transport import AiohttpTransport
from gateway.delivery.worker import DeliveryWorker, WorkerSettings
from gateway.sandbox import make_sandbox_app
from gateway.web import (
    routes_clients,
    routes_consent,
    routes_decisions,
    routes_exports,
    routes_fraud,
    routes_ledger,
    routes_meta,
    routes_provisions,
    routes_summaries,
    routes_transfers,
)
from gateway.web.endpoints import Endpoint, add_routes
from gateway.web.openapi import build_openapi
from gateway.web.problems import access_log_middleware, harden_answer, problem_middleware
from gateway.web.services import DELIVERY, SERVICES, Services


def all_endpoints() -> list[Endpoint]:
    return [
        *routes_meta.ENDPOINTS,
        *routes_consent.ENDPOINTS,
        *routes_decisions.ENDPOINTS,
        *routes_clients.ENDPOINTS,
        *routes_ledger.ENDPOINTS,
        *routes_transfers.ENDPOINTS,
        *routes_provisions.ENDPOINTS,
        *routes_exports.ENDPOINTS,
        *routes_summaries.ENDPOINTS,
        *routes_fraud.ENDPOINTS,
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


async def _delivery_running(app: web.Application) -> AsyncIterator[None]:
    """The delivery worker runs as long as the app, over one client session; on stop it lets
    deliveries under way finish (GATEWAY_DRAIN_SECONDS), the rest resume at the next start.
    It stops before the log does (cleanup runs in reverse), so its outcomes are recorded."""
    services = app[SERVICES]
    settings = services.settings
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None),
        connector=aiohttp.TCPConnector(limit=max(settings.delivery_concurrency * 2, 10)),
    ) as session:
        worker = DeliveryWorker(
            store=services.store,
            ledger=services.ledger,
            contracts=services.contracts,
            transport=AiohttpTransport(session),
            credentials=services.credential,
            clock=services.clock,
            settings=WorkerSettings(
                concurrency=settings.delivery_concurrency, policy=services.retry_policy
            ),
            removals=services.removals,
            priority=services.priority,
        )
        app[DELIVERY] = worker
        worker.start()
        yield
        await worker.stop(grace_s=settings.drain_seconds)


def make_app(services: Services) -> web.Application:
    """The service's application. The caller owns the store's lifetime."""
    app = web.Application(
        middlewares=[access_log_middleware, problem_middleware],
        client_max_size=services.settings.max_json_bytes,
    )
    app[SERVICES] = services
    app.on_response_prepare.append(harden_answer)
    app.cleanup_ctx.append(_ledger_running)
    app.cleanup_ctx.append(_delivery_running)
    app.cleanup_ctx.append(routes_fraud.fraud_running)
    if services.settings.sandbox:  # partner simulators for `serve` and `demo` (not production)
        app.add_subapp("/sandbox", make_sandbox_app(services.sandbox))
    endpoints = all_endpoints()
    app[routes_meta.OPENAPI] = build_openapi(endpoints)
    add_routes(app, endpoints)
    return app
