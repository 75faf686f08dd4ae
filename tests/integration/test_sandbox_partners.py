"""The fraud provider and the point-program recipient over real sockets, including the
recipient's summary callback posted to a tiny local server in each of its three modes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from gateway.sandbox import SandboxState, SummaryCallback, sandbox_server
from gateway.sandbox.fraud import score_order

FRAUD = "/fraud/v1/scores"
UPLOADS = "/point-program/v1/uploads"
ORDER: dict[str, str | int | float] = {
    "order_id": "o-77",
    "amount": 4800,
    "currency": "JPY",
    "card_bin": "411111",
}
API_KEY = "callback-key-1f2e"


@dataclass
class Sandbox:
    url: str
    state: SandboxState
    http: aiohttp.ClientSession

    async def post(
        self, path: str, data: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        async with self.http.post(self.url + path, data=data, headers=headers) as resp:
            return resp.status, await resp.json()

    async def stats(self, target: str) -> Any:
        async with self.http.get(self.url + "/_control/stats") as resp:
            return (await resp.json())[target]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    state = SandboxState(seed=3, min_cell_count=10)
    async with sandbox_server(state) as url, aiohttp.ClientSession() as http:
        yield Sandbox(url, state, http)


@dataclass
class Receiver:
    """A stand-in for the gateway's summaries endpoint: records what it is sent."""

    url: str
    posts: list[tuple[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application()
    runner = web.AppRunner(app)
    received = Receiver(url="")

    async def summaries(request: web.Request) -> web.Response:
        received.posts.append((request.headers.get("Authorization", ""), await request.json()))
        received.arrived.set()
        return web.json_response({"status": "accepted"}, status=202)

    app.router.add_post("/v1/partners/sample-point-program/summaries", summaries)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    received.url = f"http://127.0.0.1:{port}/v1/partners/sample-point-program/summaries"
    yield received
    await runner.cleanup()


def check_body(check_id: str = "chk-1", order: dict[str, str | int | float] = ORDER) -> bytes:
    return json.dumps({"check_id": check_id, "order": order}).encode()


async def test_fraud_score_is_deterministic_and_replayed(sandbox: Sandbox) -> None:
    status, first = await sandbox.post(FRAUD, check_body(), {"Idempotency-Key": "c1"})
    assert status == 200
    verdict = score_order(ORDER)
    assert (first["score"], first["decision"]) == (verdict.score, verdict.decision)
    assert first["reference"].startswith("fp_")
    assert len(first["reference"]) == 19
    assert await sandbox.post(FRAUD, check_body(), {"Idempotency-Key": "c1"}) == (200, first)
    status, other = await sandbox.post(FRAUD, check_body("chk-2"), {"Idempotency-Key": "c2"})
    assert other["score"] == first["score"]  # the score depends on the order only
    assert other["reference"] != first["reference"]
    stats = await sandbox.stats("fraud")
    assert (stats["checks"], stats["duplicates"], stats["keys_accepted"]) == (2, 1, 2)
    assert sandbox.state.accepted("fraud")["c1"]["reference"] == first["reference"]


async def test_fraud_amount_limit_and_bad_requests(sandbox: Sandbox) -> None:
    status, answer = await sandbox.post(FRAUD, check_body(order={**ORDER, "amount": 2_000_000}))
    assert (status, answer["decision"], answer["reasons"][0]["code"]) == (
        200,
        "decline",
        "amount_limit",
    )
    for bad in (b"nope", b'{"order": {}}', b'{"check_id": "c", "order": "x"}'):
        status, answer = await sandbox.post(FRAUD, bad)
        assert status == 400
        assert isinstance(answer["error"], str)
    assert (await sandbox.stats("fraud"))["rejected"] == 3


def shift_jis_file(rows: int) -> bytes:
    lines = ["member_id,name,birth_year,gender"]
    lines += [f"m{i},山田 太郎,{1990 + i % 3},{'fm'[i % 2]}" for i in range(rows)]
    return ("\r\n".join(lines) + "\r\n").encode("shift_jis")


CSV_SJIS = {"Content-Type": "text/csv; charset=Shift_JIS"}


async def test_shift_jis_upload_is_decoded_and_counted(sandbox: Sandbox) -> None:
    headers = {**CSV_SJIS, "Idempotency-Key": "u1"}
    status, answer = await sandbox.post(UPLOADS, shift_jis_file(30), headers)
    assert status == 202
    assert answer["rows"] == 30
    assert answer["upload_id"].startswith("up_")
    assert await sandbox.post(UPLOADS, shift_jis_file(30), headers) == (202, answer)
    stats = await sandbox.stats("point-program")
    assert (stats["uploads"], stats["rows"], stats["duplicates"]) == (1, 30, 1)


async def test_bad_uploads(sandbox: Sandbox) -> None:
    utf8 = {"Content-Type": "text/csv; charset=UTF-8"}
    assert (await sandbox.post(UPLOADS, shift_jis_file(2), utf8))[0] == 400
    assert (await sandbox.post(UPLOADS, b"", CSV_SJIS))[0] == 400
    assert (await sandbox.post(UPLOADS, b"{}", {"Content-Type": "application/json"}))[0] == 415


async def upload_and_receive(
    sandbox: Sandbox, receiver: Receiver, mode: str, rows: int = 40
) -> Any:
    sandbox.state.summary_callback = SummaryCallback(url=receiver.url, api_key=API_KEY, mode=mode)
    status, answer = await sandbox.post(UPLOADS, shift_jis_file(rows), CSV_SJIS)
    assert status == 202
    await asyncio.wait_for(receiver.arrived.wait(), 5)
    (authorization, summary), *_ = receiver.posts
    assert authorization == f"Bearer {API_KEY}"
    assert summary["upload_id"] == answer["upload_id"]
    assert summary["dimensions"] == ["age_band", "gender"]
    for _ in range(100):  # the status is recorded just after the answer arrives
        if (await sandbox.stats("point-program"))["summaries_posted"]:
            break
        await asyncio.sleep(0.01)
    stats = await sandbox.stats("point-program")
    assert (stats["summaries_posted"], stats["summary_statuses"]) == (1, {"202": 1})
    return summary


async def test_ok_summary_suppresses_small_cells(sandbox: Sandbox, receiver: Receiver) -> None:
    # 40 rows: birth years 1990/1991/1992 -> all "30-39"; genders f/m alternate: 20 and 20.
    summary = await upload_and_receive(sandbox, receiver, "ok")
    assert summary["cells"] == [
        {"values": {"age_band": "30-39", "gender": "f"}, "count": 20},
        {"values": {"age_band": "30-39", "gender": "m"}, "count": 20},
    ]
    assert "members" not in summary


async def test_small_cells_summary_has_a_cell_under_the_minimum(
    sandbox: Sandbox, receiver: Receiver
) -> None:
    summary = await upload_and_receive(sandbox, receiver, "small_cells")
    assert min(cell["count"] for cell in summary["cells"]) < sandbox.state.min_cell_count


async def test_per_person_summary_lists_members(sandbox: Sandbox, receiver: Receiver) -> None:
    summary = await upload_and_receive(sandbox, receiver, "per_person")
    assert summary["members"][0] == {"member_id": "m0", "age_band": "30-39", "gender": "f"}


async def test_unreachable_callback_is_counted_as_error(sandbox: Sandbox) -> None:
    sandbox.state.summary_callback = SummaryCallback(url="http://127.0.0.1:9/x", api_key="k")
    assert (await sandbox.post(UPLOADS, shift_jis_file(1), CSV_SJIS))[0] == 202
    for _ in range(200):
        stats = await sandbox.stats("point-program")
        if stats["summaries_posted"]:
            break
        await asyncio.sleep(0.02)
    assert stats["summary_statuses"] == {"error": 1}


async def test_pending_callbacks_are_cancelled_when_the_app_stops() -> None:
    state = SandboxState()
    state.summary_callback = SummaryCallback(url="http://127.0.0.1:9/x", api_key="k", delay_s=60)
    async with sandbox_server(state) as url, aiohttp.ClientSession() as http:
        async with http.post(url + UPLOADS, data=shift_jis_file(1), headers=CSV_SJIS) as resp:
            assert resp.status == 202
        assert any("post_summary" in repr(t.get_coro()) for t in asyncio.all_tasks())
    assert not any("post_summary" in repr(t.get_coro()) for t in asyncio.all_tasks())
    assert state.stats()["point-program"]["summaries_posted"] == 0


async def test_callback_control_endpoint(sandbox: Sandbox, receiver: Receiver) -> None:
    body = {"url": receiver.url, "api_key": API_KEY, "delay_s": 0.05, "mode": "per_person"}
    async with sandbox.http.post(sandbox.url + "/_control/summary-callback", json=body) as resp:
        assert resp.status == 204
    assert sandbox.state.summary_callback == SummaryCallback(**body)  # type: ignore[arg-type]
    async with sandbox.http.post(sandbox.url + "/_control/summary-callback", json={}) as resp:
        assert resp.status == 400
    async with sandbox.http.delete(sandbox.url + "/_control/summary-callback") as resp:
        assert resp.status == 204
    assert sandbox.state.summary_callback is None


async def test_logs_carry_no_identifier_and_no_key(sandbox: Sandbox) -> None:
    sandbox.state.summary_callback = SummaryCallback(url="http://127.0.0.1:9/x", api_key=API_KEY)
    email = "hanako.yamada@example.com"
    with capture_logs() as logs:
        await sandbox.post(FRAUD, check_body(order={"email": email, "amount": "lots"}))
        bad = {"audienceMembers": [{"userData": {"userIdentifiers": [{"emailAddress": email}]}}]}
        ingest = "/google-datamanager/v1/audienceMembers:ingest"
        status, answer = await sandbox.post(ingest, json.dumps(bad).encode())
        assert status == 400
        await sandbox.post(UPLOADS, f"member_id,email\nm1,{email}\n".encode(), CSV_SJIS)
        for _ in range(200):
            if (await sandbox.stats("point-program"))["summaries_posted"]:
                break
            await asyncio.sleep(0.02)
    assert any(entry["event"] == "summary_callback_failed" for entry in logs)
    logged = json.dumps(logs, default=str)
    assert email not in logged
    assert API_KEY not in logged
    assert email not in json.dumps(answer)
