"""`make_sandbox_app()`: the three simulated partners and the control endpoints in one aiohttp
application, to be mounted (`gateway serve` mounts it at `/sandbox`); `run_sandbox()` serves it
alone, under the same `/sandbox` prefix, so partner URLs look the same either way."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import structlog
from aiohttp import web

from gateway.sandbox import control, fraud, google, point_program
from gateway.sandbox.lifecycle import RUNTIME, STATE, Runtime, on_shutdown, runtime_context
from gateway.sandbox.pipeline import Handler, json_error
from gateway.sandbox.state import SandboxState

MOUNT = "/sandbox"
log = structlog.get_logger("gateway.sandbox")


def make_sandbox_app(state: SandboxState) -> web.Application:
    """The sandbox application over `state`; routes are relative to where it is mounted.
    Raises DiscoveryError when the discovery document lacks the Data Manager methods."""
    app = web.Application(middlewares=[_error_style])
    app[STATE] = state
    app[RUNTIME] = Runtime()
    app.cleanup_ctx.append(runtime_context)
    app.on_shutdown.append(on_shutdown)
    control.add_routes(app)
    google.add_routes(app, state.discovery)
    fraud.add_routes(app)
    point_program.add_routes(app)
    return app


@web.middleware
async def _error_style(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own errors (no route, wrong method) in the style of the partner the path
    belongs to, so a client sees what the real partner would send."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = _error_for(request.path)(exc.status, exc.reason)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        # A sandbox bug: say so in the log (no body, no headers: they may carry identifiers).
        log.exception("sandbox_error", method=request.method)
        return _error_for(request.path)(500, "The sandbox failed; see its log.")


def _error_for(path: str) -> Callable[[int, str], web.Response]:
    if f"{google.PREFIX}/" in path or path.endswith(google.PREFIX):
        return google.google_error
    return json_error


@contextlib.asynccontextmanager
async def sandbox_server(
    state: SandboxState, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve the sandbox alone while the block runs; yields its base URL, `.../sandbox` (with
    the real port when `port` is 0: tests use a free loopback port). Raises OSError when the
    address cannot be bound."""
    root = web.Application()
    root.add_subapp(MOUNT, make_sandbox_app(state))
    runner = web.AppRunner(root, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        yield _base_url(runner, host, port) + MOUNT
    finally:
        await runner.cleanup()


async def run_sandbox(
    host: str,
    port: int,
    state: SandboxState,
    *,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the sandbox alone at http://host:port/sandbox until cancelled, then stop cleanly.
    `on_ready` gets the base URL once listening. Raises OSError when the address cannot be
    bound."""
    async with sandbox_server(state, host, port) as url:
        if on_ready is not None:
            on_ready(url)
        await asyncio.Event().wait()  # until cancelled


def _base_url(runner: web.AppRunner, host: str, port: int) -> str:
    addresses = runner.addresses
    bound = addresses[0][1] if addresses else port
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{bound}"
