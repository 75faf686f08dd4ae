"""Serving the app: answers to requests aiohttp refuses before any handler runs are problem
details too, and `serve()` runs the app until SIGINT or SIGTERM.

A request that is not valid HTTP/1.1 (a malformed header, a line over 8,190 bytes, an unknown
method) never reaches the middlewares: aiohttp's `RequestHandler.handle_error` answers it, in
`text/plain`, quoting the offending bytes (a header's API key, a person's email in a path).
`GatewayRunner` makes that answer an RFC 9457 problem whose detail names only the kind of
error. aiohttp offers no setting for it; the runner gives the server it builds a subclass
whose connections use `ProblemRequestHandler` (tests/integration/test_serve.py holds this to
a real socket, so an aiohttp that changes the mechanism fails there, not in production).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    ContentLengthError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from gateway.errors import internal_problem, problem_type
from gateway.web.problems import harden, problem_response

# What each refusal says: the kind of error only, never the bytes aiohttp quotes.
_DETAILS: tuple[tuple[type[Exception], str], ...] = (
    (LineTooLong, "a request line or header line is longer than this server reads"),
    (BadHttpMethod, "the request method is not a valid HTTP method"),
    (InvalidURLError, "the request target is not a valid URL path"),
    (BadStatusLine, "the request line is not valid HTTP/1.1"),
    (InvalidHeader, "a header's name or value holds characters HTTP does not allow"),
    (ContentLengthError, "the Content-Length header is not a valid length"),
    (TransferEncodingError, "the body's chunked transfer encoding is malformed"),
)


def refusal_problem(status: int, exc: BaseException | None) -> dict[str, Any]:
    """The problem body for a request aiohttp refused (`status`: its status, 400 for every
    parse error) or failed outside the middlewares (500, 504). No `instance`: such a request
    may have no readable target."""
    if status == HTTPStatus.GATEWAY_TIMEOUT:
        slug, detail = "timeout", "the gateway did not finish the request in time"
    elif status >= 500:
        return internal_problem()
    else:
        slug = "malformed-http"
        detail = next(
            (text for kind, text in _DETAILS if isinstance(exc, kind)),
            "the request is not valid HTTP/1.1",
        )
    title = HTTPStatus(status).phrase
    return {"type": problem_type(slug), "title": title, "status": status, "detail": detail}


class ProblemRequestHandler(RequestHandler):
    """aiohttp's connection handler, answering its own refusals with problem details."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own answer first: it logs the error (through logconfig's handler, which
        # keeps the quoted bytes out of the log) and raises when a response was under way.
        super().handle_error(request, status, exc, message)
        answer = problem_response(refusal_problem(status, exc))
        answer.force_close()
        harden(answer)  # the app's on_response_prepare does not run for a request this early
        return answer


class _ProblemServer(web.Server):
    def __call__(self) -> RequestHandler:
        return ProblemRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """`web.AppRunner` whose connections answer malformed requests with problem details."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The app builds its server itself (`Application._make_handler`), with arguments of
        # its own; keep all of it and change only which handler a connection gets.
        server.__class__ = _ProblemServer
        return server


async def serve(app: web.Application, host: str, port: int, listening: Callable[[], None]) -> None:
    """Serve `app` on host:port until SIGINT or SIGTERM, then shut it down as aiohttp's
    `run_app` does (connections closed, the app's on_shutdown and on_cleanup run);
    `listening` is called once the socket is bound. Raises OSError when it cannot bind."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    runner = GatewayRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        listening()
        await stop.wait()
    finally:
        await runner.cleanup()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(RuntimeError):  # the loop is closing
                loop.remove_signal_handler(signum)
