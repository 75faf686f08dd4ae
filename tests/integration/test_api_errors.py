"""Bad input: every error is an RFC 9457 problem naming the field; never a 500 or a traceback."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from structlog.testing import capture_logs

from gateway.errors import PROBLEM_MEDIA_TYPE, problem_type
from gateway.models import Role
from gateway.web.problems import CLIENT_CLOSED_REQUEST, access_log_middleware, problem_middleware
from tests.integration.conftest import MAX_JSON_BYTES, Api

PREVIEW = "/v1/decisions/preview"
GOOD = {
    "partner": "google-customer-match",
    "purpose": "ad_customer_match",
    "legal_basis": "consent",
    "records": [{"subject_id": "m-1", "email": "dana@example.com"}],
}


async def _problem(api: Api, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    resp = await api.call(method, path, **kwargs)
    assert resp.content_type == PROBLEM_MEDIA_TYPE
    body = await resp.json(content_type=None)
    assert body["status"] == resp.status
    assert body["type"].startswith(problem_type(""))
    assert body["instance"] == path.split("?")[0]
    assert "Traceback" not in json.dumps(body)
    return resp.status, body


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("raw", "status", "pointer"),
    [
        ("{not json", 400, None),
        ("", 400, None),
        ("[1, 2]", 422, ""),
        (json.dumps({**GOOD, "legal_basis": 7}), 422, "/legal_basis"),
        (json.dumps({**GOOD, "legal_basis": "because"}), 422, "/legal_basis"),
        (json.dumps({**GOOD, "records": "all"}), 422, "/records"),
        (json.dumps({**GOOD, "records": []}), 422, "/records"),
        (json.dumps({**GOOD, "surprise": True}), 422, "/surprise"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "partner"}), 422, "/partner"),
        (json.dumps({**GOOD, "partner": "acme"}), 422, "/partner"),
        (json.dumps({**GOOD, "purpose": "astrology"}), 422, "/purpose"),
        (json.dumps({**GOOD, "records": [{"email": "x@ex.com"}]}), 422, "/records/0/subject_id"),
        (json.dumps({**GOOD, "records": [{"subject_id": "m", "a@b.jp": "x"}]}), 422, "/records/0"),
    ],
)
async def test_bad_bodies_name_the_field(
    api: Api, raw: str, status: int, pointer: str | None
) -> None:
    got, body = await _problem(api, "POST", PREVIEW, data=raw, headers=JSON)
    assert got == status
    if pointer is not None:
        assert pointer in [e.get("pointer") for e in body["errors"]]


async def test_a_detail_counts_what_it_does_not_list(api: Api) -> None:
    """The detail names five pointers; the rest are in `errors`, and it says so."""
    extra = {f"surprise_{n}": n for n in range(7)}
    status, body = await _problem(
        api, "POST", PREVIEW, data=json.dumps({**GOOD, **extra}), headers=JSON
    )
    assert status == 422
    assert len(body["errors"]) == 7
    assert body["detail"].endswith(" and 2 more (see errors)")


async def test_oversized_body_is_413(api: Api) -> None:
    raw = json.dumps({**GOOD, "rationale": "x" * (MAX_JSON_BYTES + 1)})
    status, body = await _problem(api, "POST", PREVIEW, data=raw, headers=JSON)
    assert status == 413
    assert body["type"] == problem_type("payload-too-large")


async def test_wrong_media_type_is_415(api: Api) -> None:
    status, _ = await _problem(
        api, "POST", PREVIEW, data=json.dumps(GOOD), headers={"Content-Type": "text/plain"}
    )
    assert status == 415


async def test_unknown_route_and_method_are_problems(api: Api) -> None:
    status, _ = await _problem(api, "GET", "/v1/nothing-here")
    assert status == 404
    resp = await api.call("PATCH", "/v1/decisions/preview", role=Role.ADMIN)
    assert resp.status == 405
    assert resp.content_type == PROBLEM_MEDIA_TYPE
    assert "POST" in resp.headers["Allow"]
    detail = (await resp.json(content_type=None))["detail"]
    assert detail.startswith("this endpoint does not accept PATCH; it accepts ")
    assert "POST" in detail


async def test_an_unknown_query_parameter_is_refused_not_ignored(api: Api) -> None:
    """`subject=` for `subject_id=`: ignored, the filter would answer with everyone's log."""
    status, body = await _problem(api, "GET", "/v1/transfers?subject=m-1", role=Role.COMPLIANCE)
    assert status == 422
    assert body["errors"] == [
        {"parameter": "subject", "detail": "not a parameter of this endpoint"}
    ]
    assert "subject_id" in body["detail"]  # what it takes
    status, body = await _problem(
        api, "GET", "/v1/transfers?dana%40example.com=1", role=Role.COMPLIANCE
    )
    assert status == 422
    assert "dana" not in json.dumps(body)  # a parameter that is no name is counted, not named
    # An endpoint that takes no parameters refuses them too (a filter it does not have).
    path = "/v1/subjects/m-1/disclosures?partner=google-customer-match"
    status, body = await _problem(api, "GET", path, role=Role.COMPLIANCE)
    assert status == 422
    assert body["errors"] == [
        {"parameter": "partner", "detail": "not a parameter of this endpoint"}
    ]
    assert body["detail"].endswith("it takes none")


async def test_head_answers_where_get_does(api: Api) -> None:
    """RFC 9110 9.3.2: the GET's status and headers, no body; the role check applies too."""
    get = await api.call("GET", "/v1/partners", role=Role.COMPLIANCE)
    head = await api.call("HEAD", "/v1/partners", role=Role.COMPLIANCE)
    assert (
        (head.status, head.content_type)
        == (get.status, get.content_type)
        == (200, "application/json")
    )
    assert await head.read() == b""
    assert (await api.call("HEAD", "/v1/jobs/x", role=Role.FRAUD)).status == 403
    allowed = (await api.call("PUT", "/healthz")).headers["Allow"]
    assert set(allowed.split(",")) == {"GET", "HEAD"}


async def test_a_bad_format_query_names_the_parameter(api: Api) -> None:
    status, body = await _problem(
        api, "POST", "/v1/consents/import?format=xml", data="x", headers=JSON
    )
    assert status == 422
    assert body["errors"] == [{"parameter": "format", "detail": "jsonl or csv"}]


async def test_a_caller_leaving_mid_download_is_no_server_error() -> None:
    """A download whose caller went away is logged as such (499, client_disconnected), not as
    a 500 with a traceback; whether aiohttp cancels the handler or its next write fails."""

    async def slow_download(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        assert request.transport is not None
        while not request.transport.is_closing():  # noqa: ASYNC110 (a page being read)
            await asyncio.sleep(0.01)
        await response.write(b"too late")  # raises: the transport is closing
        return response

    app = web.Application(middlewares=[access_log_middleware, problem_middleware])
    app.router.add_get("/download", slow_download)
    async with TestServer(app, host="127.0.0.1") as server:
        with capture_logs() as logs:
            reader, writer = await asyncio.open_connection(server.host, server.port)
            writer.write(b"GET /download HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await reader.readline()).startswith(b"HTTP/1.1 200")
            writer.transport.abort()
            async with asyncio.timeout(10):
                while not any(e["event"] == "request" for e in logs):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []
    assert [e["status"] for e in logs if e["event"] == "request"] == [CLIENT_CLOSED_REQUEST]


async def test_a_sender_refused_another_partner_is_not_told_back_what_it_typed(api: Api) -> None:
    """The 403 names the partners the client acts for, never the one in the request (an
    email pasted into `partner` would otherwise come back in the answer)."""
    status, problem = await _problem(
        api,
        "POST",
        "/v1/exports/attribute-estimation?partner=dana%40example.com&idempotency_key=k-403",
        role=Role.SENDER,
        data="subject_id\nm-1\n",
        headers={"Content-Type": "text/csv"},
    )
    assert status == 403
    assert "dana@example.com" not in json.dumps(problem)
    assert "google-customer-match" in problem["detail"]


async def test_an_unhandled_error_is_logged_by_route_never_by_path() -> None:
    """A 500's log line names the route template: the path holds the subject id (an email,
    as some callers use), which a log must not (house rule 10)."""

    async def broken(request: web.Request) -> web.StreamResponse:
        raise RuntimeError("a bug")

    app = web.Application(middlewares=[access_log_middleware, problem_middleware])
    app.router.add_get("/v1/subjects/{subject_id}/consents", broken)
    async with TestServer(app, host="127.0.0.1") as server, aiohttp.ClientSession() as session:
        with capture_logs() as logs:
            url = f"http://{server.host}:{server.port}/v1/subjects/dana@example.com/consents"
            async with session.get(url) as resp:
                assert resp.status == 500
                assert "Traceback" not in await resp.text()
    [error] = [e for e in logs if e["event"] == "unhandled_error"]
    assert error["route"] == "/v1/subjects/{subject_id}/consents"
    assert "dana@example.com" not in json.dumps(logs, default=str)
