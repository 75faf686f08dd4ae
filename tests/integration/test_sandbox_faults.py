"""Injected faults as a real aiohttp client sees them, set through the control endpoints."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from gateway.sandbox import FaultPlan, SandboxState, sandbox_server
from gateway.sandbox.examples import example_ingest_request

FRAUD = "/fraud/v1/scores"
INGEST = "/google-datamanager/v1/audienceMembers:ingest"
CHECK = {"check_id": "chk-1", "order": {"order_id": "o-1", "amount": 1200, "currency": "JPY"}}


@dataclass
class Sandbox:
    url: str
    state: SandboxState
    http: aiohttp.ClientSession

    async def faults(self, **plan: Any) -> None:
        async with self.http.post(self.url + "/_control/faults", json=plan) as resp:
            assert resp.status == 204, await resp.text()

    async def check(self, key: str | None = None, **kwargs: Any) -> aiohttp.ClientResponse:
        headers = {"Idempotency-Key": key} if key else {}
        async with self.http.post(self.url + FRAUD, json=CHECK, headers=headers, **kwargs) as r:
            await r.read()
            return r

    async def stats(self, target: str = "fraud") -> Any:
        async with self.http.get(self.url + "/_control/stats") as resp:
            return (await resp.json())[target]


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    state = SandboxState(seed=5)
    async with sandbox_server(state) as url, aiohttp.ClientSession() as http:
        yield Sandbox(url, state, http)


@pytest.mark.parametrize(("kind", "retry_after"), [("429", 1.5), ("503", 2.0), ("500", 1.0)])
async def test_status_faults(sandbox: Sandbox, kind: str, retry_after: float) -> None:
    await sandbox.faults(target="fraud", kinds=[kind], first_n=1, retry_after=retry_after)
    faulted = await sandbox.check()
    assert faulted.status == int(kind)
    if kind == "500":
        assert "Retry-After" not in faulted.headers
    else:
        # RFC 9110 §10.2.3: delay-seconds is an integer, so 1.5 s is announced as 2.
        assert faulted.headers["Retry-After"] == "2"
    assert (await sandbox.check()).status == 200
    stats = await sandbox.stats()
    assert stats["faults"][kind] == 1
    assert stats["accepted"] == 1


async def test_google_faults_have_googles_error_shape(sandbox: Sandbox) -> None:
    await sandbox.faults(target="google-datamanager", kinds=["429"], first_n=1)
    async with sandbox.http.post(sandbox.url + INGEST, json=example_ingest_request()) as resp:
        assert resp.status == 429
        assert (await resp.json())["error"]["status"] == "RESOURCE_EXHAUSTED"


async def test_timeout_answers_504_after_timeout_s(sandbox: Sandbox) -> None:
    await sandbox.faults(target="fraud", kinds=["timeout"], first_n=2, timeout_s=0.3)
    started = time.monotonic()
    assert (await sandbox.check()).status == 504
    assert time.monotonic() - started >= 0.3
    with pytest.raises(asyncio.TimeoutError):  # the client normally gives up first
        await sandbox.check(timeout=aiohttp.ClientTimeout(total=0.1))


async def test_drop_closes_the_connection_without_a_response(sandbox: Sandbox) -> None:
    await sandbox.faults(target="fraud", kinds=["drop"], first_n=1)
    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        await sandbox.check()
    assert (await sandbox.check()).status == 200


async def test_first_n_cycles_kinds_and_faulted_requests_are_not_accepted(
    sandbox: Sandbox,
) -> None:
    await sandbox.faults(target="*", kinds=["500", "429"], first_n=3, retry_after=0)
    statuses = [(await sandbox.check("same-key")).status for _ in range(5)]
    assert statuses == [500, 429, 500, 200, 200]
    stats = await sandbox.stats()
    assert (stats["accepted"], stats["duplicates"]) == (1, 1)
    assert stats["faults"]["500"] == 2
    assert (await sandbox.stats("point-program"))["faults"]["500"] == 0


async def test_rate_is_seeded_and_about_right(sandbox: Sandbox) -> None:
    await sandbox.faults(target="fraud", rate=0.3, kinds=["500", "503"], retry_after=0)
    statuses = [(await sandbox.check()).status for _ in range(300)]
    faulted = sum(status != 200 for status in statuses)
    assert 60 < faulted < 120  # 90 expected, sd ~8
    assert {500, 503} <= set(statuses)

    again = SandboxState(seed=5)  # same seed, same draws
    again.set_faults("fraud", sandbox.state.faults("fraud"))  # type: ignore[arg-type]
    drawn = [again.begin("fraud", authorized=False).kind for _ in range(300)]
    assert [k is not None for k in drawn] == [status != 200 for status in statuses]


async def test_latency_applies_to_every_request(sandbox: Sandbox) -> None:
    await sandbox.faults(target="fraud", latency_ms=150)
    started = time.monotonic()
    assert (await sandbox.check()).status == 200
    assert time.monotonic() - started >= 0.15


async def test_control_errors_and_clearing(sandbox: Sandbox) -> None:
    for bad in ({"target": "nowhere"}, {"target": "fraud", "kinds": ["404"]}, [1]):
        async with sandbox.http.post(sandbox.url + "/_control/faults", json=bad) as resp:
            assert resp.status == 400
            assert "error" in await resp.json()
    await sandbox.faults(target="fraud", first_n=5)
    async with sandbox.http.get(sandbox.url + "/_control/faults") as resp:
        assert (await resp.json())["fraud"]["first_n"] == 5
    async with sandbox.http.delete(sandbox.url + "/_control/faults") as resp:
        assert resp.status == 204
    assert (await sandbox.check()).status == 200


async def test_shutdown_does_not_wait_for_a_hanging_timeout() -> None:
    state = SandboxState()
    state.set_faults("fraud", FaultPlan(kinds=("timeout",), first_n=1, timeout_s=60))
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        async with sandbox_server(state) as url:
            pending = asyncio.ensure_future(http.post(url + FRAUD, json=CHECK))
            for _ in range(500):  # until the request hangs in the sandbox
                if state.stats()["fraud"]["requests"]:
                    break
                await asyncio.sleep(0.01)
        # The hanging request is woken by the shutdown, answered, and the server stops.
        response = await pending
        assert response.status == 504
        response.release()
    assert time.monotonic() - started < 10


async def test_oversized_and_incomplete_bodies_are_refused(sandbox: Sandbox) -> None:
    async with sandbox.http.post(sandbox.url + FRAUD, data=b" " * (2 * 1024 * 1024)) as resp:
        assert resp.status == 413
    port = int(sandbox.url.split(":")[2].split("/")[0])
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        b"POST /sandbox/fraud/v1/scores HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    for _ in range(200):
        if (await sandbox.stats())["rejected"] == 2:
            break
        await asyncio.sleep(0.01)
    stats = await sandbox.stats()
    assert (stats["requests"], stats["rejected"], stats["accepted"]) == (2, 2, 0)
