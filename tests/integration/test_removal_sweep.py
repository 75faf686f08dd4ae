"""A removal check owed after a delivery is never lost (migration 8; docs/provisions.md).

The worker checks a delivered ingest for withdrawals right after logging it delivered. If the
process dies in between, the check is owed in the store, and the worker's sweep (at start,
then every `removal_sweep_s`) runs it: the person who withdrew while the ingest was retrying
is removed from the partner all the same.
"""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from structlog.testing import capture_logs

from gateway.delivery.outbox import DeliveryState, OutboxDone
from gateway.delivery.transport import AiohttpTransport
from gateway.delivery.worker import DeliveryWorker, WorkerSettings
from gateway.models import ConsentAction, ConsentEvent
from gateway.sandbox import FaultPlan
from gateway.web.services import DELIVERY
from tests.integration.conftest import Live
from tests.integration.test_customer_match import (
    delivered_ingests,
    entries_of,
    grant,
    record,
    removal_entries,
    removed_members,
    requests_seen,
    settled,
    upload,
)


def worker_of(live: Live) -> DeliveryWorker:
    app = live.api.http.app
    assert app is not None
    worker: DeliveryWorker = app[DELIVERY]
    return worker


async def owed(live: Live) -> list[str]:
    rows = await live.api.services.store.removal_checks_owed(after_seq=0, limit=100)
    return [row.delivery_id for row in rows]


async def test_a_check_cut_off_by_a_crash_is_run_by_the_sweep(
    live: Live, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = worker_of(live)
    await grant(live, "cust-1", "cust-2")
    live.sandbox.set_faults(
        "google-datamanager", FaultPlan(rate=1.0, kinds=("503",), retry_after=0.3)
    )
    job = await upload(live, [record(1), record(2)], "k-crash-window")
    await requests_seen(live, 1)  # refused once: retrying, so the withdrawal finds nothing
    resp = await live.api.call("DELETE", "/v1/subjects/cust-1/consents/ad_customer_match")
    assert resp.status == 200

    async def crashed(*_: object) -> None:  # the process died after the `delivered` commit
        return None

    monkeypatch.setattr(worker, "_remove_stopped", crashed)
    live.sandbox.clear_faults()
    assert (await settled(live, job["job_id"]))["state"] == "done"
    (delivery,) = await live.api.services.store.deliveries_of_transfer(job["transfer_id"])
    assert await owed(live) == [delivery.delivery_id]
    assert sum(live.sandbox.member_counts("remove").values()) == 0

    monkeypatch.undo()  # the next start's sweep
    with capture_logs() as logs:
        await worker.run_owed_checks()
    assert {"event": "removal_checks_resumed", "deliveries": 1, "log_level": "info"} in logs
    await removed_members(live, 1)
    removals = await removal_entries(live, "cust-1", "allowed")
    assert [e["refers_to"] for e in removals] == delivered_ingests(await entries_of(live, "cust-1"))
    assert not [e for e in await entries_of(live, "cust-2") if e.get("operation") == "remove"]
    assert await owed(live) == []


async def test_a_check_run_twice_removes_nobody_twice(live: Live) -> None:
    """The sweep may run a check a delivery already ran (one that ended meanwhile, another
    instance's sweep): what was queued once is not queued again."""
    await grant(live, "cust-3")
    job = await upload(live, [record(3)], "k-twice")
    await settled(live, job["job_id"])
    resp = await live.api.call("DELETE", "/v1/subjects/cust-3/consents/ad_customer_match")
    assert resp.status == 200
    await removed_members(live, 1)
    assert await owed(live) == []
    (delivery,) = await live.api.services.store.deliveries_of_transfer(job["transfer_id"])
    now = live.api.services.clock()
    done = OutboxDone(delivery.delivery_id, DeliveryState.DELIVERED, 1, None, now)
    await live.api.services.store.apply_side_writes([done])  # owed once more
    await worker_of(live).run_owed_checks()
    assert await owed(live) == []
    assert len(await removal_entries(live, "cust-3", "allowed")) == 1
    assert sum(live.sandbox.member_counts("remove").values()) == 1


async def test_a_started_worker_sweeps_at_start_and_then_periodically(live: Live) -> None:
    """`start()` runs the sweep by itself: at once, and every removal_sweep_s after."""
    await grant(live, "cust-5")
    job = await upload(live, [record(5)], "k-periodic")
    await settled(live, job["job_id"])
    services = live.api.services
    (delivery,) = await services.store.deliveries_of_transfer(job["transfer_id"])
    withdrawal = ConsentEvent(
        subject_id="cust-5", purpose="ad_customer_match", action=ConsentAction.WITHDRAW,
        effective_at=services.clock(), recorded_at=services.clock(), recorded_by="test",
    )  # fmt: skip
    await services.store.append_consent_events([withdrawal])  # the API would remove at once
    await worker_of(live).stop(grace_s=5)  # one worker per store, as in a deployment
    async with aiohttp.ClientSession() as session:
        worker = DeliveryWorker(
            store=services.store, ledger=services.ledger, contracts=services.contracts,
            transport=AiohttpTransport(session), credentials=services.credential,
            clock=services.clock, settings=WorkerSettings(removal_sweep_s=0.05),
            removals=services.removals,
        )  # fmt: skip
        worker.start()
        try:
            for _ in range(2):  # owed again after the first sweep: the next one runs it
                now = services.clock()
                done = OutboxDone(delivery.delivery_id, DeliveryState.DELIVERED, 1, None, now)
                await services.store.apply_side_writes([done])
                async with asyncio.timeout(10):
                    while await owed(live):  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
        finally:
            await worker.stop(grace_s=5)
    await removed_members(live, 1)  # queued once: the second check found it removed
    assert len(await removal_entries(live, "cust-5", "allowed")) == 1
