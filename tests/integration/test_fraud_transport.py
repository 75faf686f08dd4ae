"""The transport (gateway.delivery.transport.AiohttpTransport) that fraud checks and the
delivery worker share, against local aiohttp servers on 127.0.0.1: redirects are answers,
never followed; a body is read to its end whatever pieces it comes in; one longer than the cap
is refused. And the delivery worker's reading of a redirect: a dead letter, not retried."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.contracts import PartnerContract
from gateway.delivery.transport import MAX_RESPONSE_BYTES, AiohttpTransport, HttpResponse
from gateway.models import Role
from tests.integration.conftest import Live
from tests.integration.test_customer_match import settled

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
REDIRECTS = [301, 302, 303, 307, 308]


@contextlib.asynccontextmanager
async def serving(routes: dict[str, Handler]) -> AsyncIterator[TestServer]:
    """A local server answering each path with its handler (any method)."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield server
    finally:
        await server.close()


async def post(url: str, body: bytes = b'{"order": {}}') -> HttpResponse:
    async with aiohttp.ClientSession() as session:
        return await AiohttpTransport(session).post(url, body, headers={}, limit_s=5.0)


def in_pieces(pieces: list[bytes], *, pause_s: float = 0.05) -> Handler:
    """A chunked answer written piece by piece, with a pause between pieces."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for piece in pieces:
            await response.write(piece)
            await asyncio.sleep(pause_s)
        await response.write_eof()
        return response

    return handler


@pytest.mark.parametrize("status", REDIRECTS)
async def test_a_redirect_is_the_answer_and_is_not_followed(status: int) -> None:
    arrived: list[tuple[str, bytes]] = []

    async def moved(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": "/elsewhere"})

    async def elsewhere(request: web.Request) -> web.Response:
        arrived.append((request.method, await request.read()))
        return web.json_response({"decision": "approve"})

    async with serving({"/scores": moved, "/elsewhere": elsewhere}) as server:
        response = await post(str(server.make_url("/scores")))
    assert response.status == status
    assert response.headers["Location"] == "/elsewhere"
    assert arrived == []  # neither the body (307, 308) nor a GET (301, 302, 303) went there


async def test_a_body_sent_in_pieces_is_read_to_its_end() -> None:
    verdict = b'{"reference": "fp_0a1b", "score": 250, "decision": "approve", "reasons": []}'
    pieces = [verdict[:20], verdict[20:41], verdict[41:60], verdict[60:]]
    async with serving({"/scores": in_pieces(pieces)}) as server:
        response = await post(str(server.make_url("/scores")))
    assert (response.status, response.body, response.body_too_large) == (200, verdict, False)


async def test_a_body_of_exactly_the_cap_is_read() -> None:
    pieces = [b"x" * (MAX_RESPONSE_BYTES // 2)] * 2
    async with serving({"/scores": in_pieces(pieces, pause_s=0.01)}) as server:
        response = await post(str(server.make_url("/scores")))
    assert len(response.body) == MAX_RESPONSE_BYTES
    assert response.body_too_large is False


async def test_a_body_over_the_cap_is_refused_in_pieces_or_declared() -> None:
    over = [b"x" * (MAX_RESPONSE_BYTES // 2)] * 2 + [b"y"]

    async def declared(request: web.Request) -> web.Response:
        return web.Response(body=b"z" * (MAX_RESPONSE_BYTES + 1))  # with its Content-Length

    routes = {"/pieces": in_pieces(over, pause_s=0.01), "/declared": declared}
    async with serving(routes) as server:
        for path in routes:
            response = await post(str(server.make_url(path)))
            assert (response.status, response.body, response.body_too_large) == (200, b"", True)


# --- the delivery worker over the same transport


GRANT = {
    "notice_version": "privacy-notice-2026-04",
    "obtained_at": "2026-04-01T09:30:00+09:00",
    "channel": "web",
    "foreign_disclosure_version": "us-google-2025-04",
}
UPLOAD = {
    "partner": "google-customer-match",
    "destination": "default",
    "purpose": "ad_customer_match",
    "legal_basis": "consent",
}


@pytest.mark.parametrize("status", [302, 307])
async def test_the_worker_dead_letters_a_redirect_without_following_it(
    live: Live, status: int
) -> None:
    asked: list[str] = []
    arrived: list[str] = []

    async def moved(request: web.Request) -> web.Response:
        asked.append(request.method)
        return web.Response(status=status, headers={"Location": "/elsewhere"})

    async def elsewhere(request: web.Request) -> web.Response:
        arrived.append(request.method)  # followed, the upload would be "done" here
        return web.json_response({"requestId": "r-1"})

    resp = await live.api.call("PUT", "/v1/subjects/cust-1/consents/ad_customer_match", json=GRANT)
    assert resp.status == 201, await resp.text()
    async with serving({"/google/{tail:.*}": moved, "/elsewhere": elsewhere}) as server:
        contracts = cast(dict[str, PartnerContract], live.api.services.contracts)
        contract = contracts["google-customer-match"]
        endpoint = contract.endpoint.model_copy(update={"url": str(server.make_url("/google"))})
        contracts["google-customer-match"] = contract.model_copy(update={"endpoint": endpoint})
        records = [{"subject_id": "cust-1", "email": "Person.1@Example.com"}]
        body = {**UPLOAD, "idempotency_key": f"k-redirect-{status}", "records": records}
        resp = await live.api.call("POST", "/v1/provisions/customer-match", Role.SENDER, json=body)
        assert resp.status == 202, await resp.text()
        job = await settled(live, (await resp.json())["job_id"])
    assert job["state"] == "failed"
    assert job["counts"]["failed"] == 1
    assert asked == ["POST"]  # a permanent refusal: not retried
    assert arrived == []  # and not followed
    [dead] = await live.api.services.store.deliveries_of_transfer(job["transfer_id"])
    assert dead.last_error == f"PermanentFailure: partner redirected ({status}); not followed"
