"""The simulated Data Manager API over a real loopback socket: Google-style answers, replay of
Idempotency-Keys, exactly-once accounting, and the sandbox mounted the way `gateway serve` does."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from gateway.sandbox import FaultPlan, SandboxState, make_sandbox_app, sandbox_server
from gateway.sandbox.examples import (
    example_ingest_request,
    example_remove_request,
    expected_digest,
)
from gateway.web.problems import access_log_middleware, problem_middleware

INGEST = "/google-datamanager/v1/audienceMembers:ingest"
REMOVE = "/google-datamanager/v1/audienceMembers:remove"


@dataclass
class Sandbox:
    url: str
    state: SandboxState
    http: aiohttp.ClientSession

    async def post(self, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        heads = {k.replace("_", "-"): v for k, v in headers.items()}
        async with self.http.post(self.url + path, data=data, headers=heads) as resp:
            return resp.status, json.loads(await resp.read())

    async def stats(self) -> Any:
        async with self.http.get(self.url + "/_control/stats") as resp:
            return await resp.json()


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    state = SandboxState(seed=11)
    async with sandbox_server(state) as url, aiohttp.ClientSession() as http:
        yield Sandbox(url, state, http)


async def test_valid_ingest_gets_a_request_id_and_is_counted(sandbox: Sandbox) -> None:
    status, body = await sandbox.post(
        INGEST, example_ingest_request(3), Authorization="Bearer any-token"
    )
    assert status == 200
    assert set(body) == {"requestId"}
    assert uuid.UUID(body["requestId"]).version == 4
    stats = (await sandbox.stats())["google-datamanager"]
    assert stats["requests"] == stats["accepted"] == stats["unkeyed"] == 1
    assert stats["with_authorization"] == 1
    assert stats["ingested_members"] == 3


async def test_invalid_bodies_get_google_errors_naming_the_field(sandbox: Sandbox) -> None:
    body = example_ingest_request(5)
    body["audienceMembers"][3]["userData"]["userIdentifiers"][0]["emailAddress"] = "a@b.example"
    status, answer = await sandbox.post(INGEST, body)
    assert status == 400
    error = answer["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    (detail,) = error["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    fields = [v["field"] for v in detail["fieldViolations"]]
    assert fields == ["audienceMembers[3].userData.userIdentifiers[0].emailAddress"]
    assert "a@b.example" not in json.dumps(answer)
    assert (await sandbox.stats())["google-datamanager"]["rejected"] == 1


def _broken(case: str) -> tuple[dict[str, Any], str]:
    """An ingest body broken in one way, and the field a violation must name."""
    body = example_ingest_request(2)
    first = body["audienceMembers"][1]["userData"]["userIdentifiers"][0]
    if case == "unknown field":
        body["audienceMembers"][1]["userData"]["hashedEmail"] = "x"
        return body, "audienceMembers[1].userData.hashedEmail"
    if case == "wrong enum":
        body["consent"]["adPersonalization"] = "YES"
        return body, "consent.adPersonalization"
    if case == "wrong type":
        body["destinations"][0]["operatingAccount"]["accountId"] = 1234567890
        return body, "destinations[0].operatingAccount.accountId"
    if case == "10,001 members":
        return example_ingest_request(10_001), "audienceMembers"
    if case == "non-hex with HEX":
        first["emailAddress"] = "taro@example.com"
        return body, "audienceMembers[1].userData.userIdentifiers[0].emailAddress"
    if case == "missing ToS":
        del body["termsOfService"]
        return body, "termsOfService.customerMatchTermsOfServiceStatus"
    del body["destinations"]
    return body, "destinations"


@pytest.mark.parametrize(
    "case",
    [
        "unknown field",
        "wrong enum",
        "wrong type",
        "10,001 members",
        "non-hex with HEX",
        "missing ToS",
        "missing destination",
    ],
)
async def test_each_broken_body_is_a_400_naming_the_field(sandbox: Sandbox, case: str) -> None:
    body, field = _broken(case)
    status, answer = await sandbox.post(INGEST, body)
    assert status == 400
    assert answer["error"]["status"] == "INVALID_ARGUMENT"
    violations = answer["error"]["details"][0]["fieldViolations"]
    assert field in [v["field"] for v in violations]


async def test_not_json_wrong_method_and_unknown_path(sandbox: Sandbox) -> None:
    status, answer = await sandbox.post(INGEST, b"{not json")
    assert (status, answer["error"]["status"]) == (400, "INVALID_ARGUMENT")
    async with sandbox.http.get(sandbox.url + INGEST) as resp:
        assert resp.status == 405
        assert resp.headers["Allow"] == "POST"
        assert (await resp.json())["error"]["code"] == 405
    status, answer = await sandbox.post("/google-datamanager/v1/audienceMembers:removeAll", {})
    assert (status, answer["error"]["status"]) == (404, "NOT_FOUND")


async def test_same_idempotency_key_replays_the_first_answer(sandbox: Sandbox) -> None:
    body = example_ingest_request(4)
    first = await sandbox.post(INGEST, body, Idempotency_Key="batch-1")
    async with sandbox.http.post(
        sandbox.url + INGEST, json=body, headers={"Idempotency-Key": "batch-1"}
    ) as resp:
        second = resp.status, await resp.json()
        assert resp.headers["Idempotent-Replayed"] == "true"
    assert first == second
    stats = (await sandbox.stats())["google-datamanager"]
    assert (stats["accepted"], stats["duplicates"], stats["unkeyed"]) == (1, 1, 0)
    assert stats["ingested_members"] == 4


async def test_every_member_is_accounted_exactly_once(sandbox: Sandbox) -> None:
    sandbox.state.set_faults("google-datamanager", FaultPlan(first_n=1, kinds=("503",)))
    for batch in range(3):
        body = example_ingest_request(100, start=100 * batch)
        statuses = [await sandbox.post(INGEST, body, Idempotency_Key=f"b{batch}")]
        statuses.append(await sandbox.post(INGEST, body, Idempotency_Key=f"b{batch}"))
        assert [s for s, _ in statuses] == ([503, 200] if batch == 0 else [200, 200])
    counts = sandbox.state.member_counts("ingest")
    assert counts == {expected_digest(i): 1 for i in range(300)}
    async with sandbox.http.get(
        sandbox.url + "/_control/keys", params={"target": "google-datamanager"}
    ) as resp:
        keys = (await resp.json())["keys"]
    assert sorted(keys) == ["b0", "b1", "b2"]
    assert keys["b1"]["members"] == 100
    assert keys["b1"]["digests"][0] == expected_digest(100).hex()


async def test_remove_and_validate_only(sandbox: Sandbox) -> None:
    status, _ = await sandbox.post(REMOVE, example_remove_request(2), Idempotency_Key="r1")
    assert status == 200
    status, answer = await sandbox.post(INGEST, {**example_ingest_request(2), "validateOnly": True})
    assert status == 200
    assert "requestId" in answer
    stats = (await sandbox.stats())["google-datamanager"]
    assert (stats["removed_members"], stats["ingested_members"], stats["validate_only"]) == (
        2,
        0,
        1,
    )
    assert sandbox.state.member_counts("remove") == {expected_digest(0): 1, expected_digest(1): 1}


async def test_chunked_bodies_are_read(sandbox: Sandbox) -> None:
    raw = json.dumps(example_ingest_request(50)).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 1000):
            yield raw[start : start + 1000]

    async with sandbox.http.post(sandbox.url + INGEST, data=chunks()) as resp:
        assert resp.status == 200


async def test_mounted_in_an_app_with_the_gateways_middlewares() -> None:
    """`gateway serve` mounts the sandbox with app.add_subapp("/sandbox", ...) under its
    problem and access-log middlewares: the partner styles and faults must survive that."""
    state = SandboxState()
    # The gateway's own JSON limit must not cap what its mounted partners accept.
    root = web.Application(
        middlewares=[access_log_middleware, problem_middleware], client_max_size=256 * 1024
    )
    root.add_subapp("/sandbox", make_sandbox_app(state))
    runner = web.AppRunner(root)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}/sandbox"
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(base + INGEST, json=example_ingest_request(2000)) as resp:
                assert resp.status == 200
            async with http.post(base + "/google-datamanager/v1/nothing", json={}) as resp:
                assert resp.status == 404
                assert (await resp.json())["error"]["status"] == "NOT_FOUND"
            state.set_faults("fraud", FaultPlan(first_n=1, kinds=("drop",)))
            with pytest.raises(aiohttp.ServerDisconnectedError):
                await http.post(base + "/fraud/v1/scores", json={})
    finally:
        await runner.cleanup()
