"""Two submissions of one idempotency key at once (a client that retried while its first
request was still streaming): every record is decided, logged and sent once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from gateway.models import Role
from tests.integration.conftest import Live

PEOPLE = 20
QUERY = (
    "partner=google-customer-match&destination=default&purpose=ad_customer_match"
    "&legal_basis=consent&idempotency_key=k-twice"
)
GRANT = {
    "notice_version": "privacy-notice-2026-04",
    "obtained_at": "2026-04-01T09:30:00+09:00",
    "channel": "web",
    "foreign_disclosure_version": "us-google-2025-04",
}
LINES = [b"subject_id,email\r\n"] + [
    f"cust-{n},person.{n}@example.com\r\n".encode() for n in range(PEOPLE)
]


async def _post(live: Live, body: Any) -> dict[str, Any]:
    headers = {"Content-Type": "text/csv"}
    path = f"/v1/provisions/customer-match?{QUERY}"
    resp = await live.api.call("POST", path, Role.SENDER, data=body, headers=headers)
    assert resp.status == 202, await resp.text()
    job: dict[str, Any] = await resp.json()
    return job


async def test_a_second_submission_waits_for_the_first_and_sends_nothing_twice(
    live: Live,
) -> None:
    for n in range(PEOPLE):
        resp = await live.api.call(
            "PUT", f"/v1/subjects/cust-{n}/consents/ad_customer_match", json=GRANT
        )
        assert resp.status == 201
    go_on = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:  # half the file, then a pause
        for line in LINES[: PEOPLE // 2]:
            yield line
        await go_on.wait()
        for line in LINES[PEOPLE // 2 :]:
            yield line

    first = asyncio.create_task(_post(live, slow()))
    await asyncio.sleep(0.5)  # the first is feeding its job
    second = asyncio.create_task(_post(live, b"".join(LINES)))
    await asyncio.sleep(0.5)  # the second came while the first was still under way
    go_on.set()
    jobs = await asyncio.gather(first, second)
    assert jobs[0]["job_id"] == jobs[1]["job_id"]
    for job in jobs:
        assert job["counts"]["received"] == job["counts"]["allowed"] == PEOPLE
    async with asyncio.timeout(30):
        while sum(live.sandbox.member_counts("ingest").values()) < PEOPLE:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # nothing more arrives
    members = live.sandbox.member_counts("ingest")
    assert len(members) == PEOPLE
    assert set(members.values()) == {1}


async def test_an_upload_waits_while_a_fraud_check_is_under_way(live: Live) -> None:
    """A checkout's fraud check goes first: the upload's reading and planning wait at their
    pauses while one is under way (gateway.cooperative.Priority), and then go on."""
    priority = live.api.services.priority
    priority.max_wait_s = 60.0  # as if checks never stopped: the upload waits for them
    lines = [b"subject_id,email\r\n"] + [
        f"cust-{n},person.{n}@example.com\r\n".encode() for n in range(5_000)
    ]
    with priority.urgent():
        posting = asyncio.create_task(_post(live, b"".join(lines)))
        await asyncio.sleep(1.0)
        assert not posting.done()  # 5,000 records take more than a slice: it paused
    job = await asyncio.wait_for(posting, timeout=60)
    assert job["counts"]["received"] == 5_000
