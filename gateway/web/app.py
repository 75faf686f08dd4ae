"""`make_app()`: the aiohttp application, with its dependencies passed in."""

from __future__ import annotations

from aiohttp import web

from gateway.web import routes_clients, routes_consent, routes_decisions, routes_meta
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
    ]


def make_app(services: Services) -> web.Application:
    """The service's application. The caller owns the store's lifetime."""
    app = web.Application(
        middlewares=[access_log_middleware, problem_middleware],
        client_max_size=services.settings.max_json_bytes,
    )
    app[SERVICES] = services
    endpoints = all_endpoints()
    app[routes_meta.OPENAPI] = build_openapi(endpoints)
    add_routes(app, endpoints)
    return app
