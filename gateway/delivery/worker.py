"""The delivery worker: sends what the outbox holds, records what became of it.

Each pending row is sent with its own bytes and its `delivery_id` as the `Idempotency-Key`,
so a retry, a restart or a replay can never make the partner take it twice (a partner that
deduplicates by key; Data Manager requests are also safe to repeat). Retries follow
`gateway.delivery.retry` (exponential backoff with jitter, Retry-After honoured, only what is
retryable); every failed attempt is counted in the row, so a restart resumes with the
attempts left. When a row succeeds, its `delivered` entries and the row's new state are
appended in one transaction; when it runs out of attempts or is refused for good, its
`failed` entries and the dead-letter state are (and `gateway outbox replay` can send it
again).

After an ingest is delivered, the worker asks whether anyone in it has since withdrawn
consent for its purpose or asked to stop provision to its partner, and if so queues their
removal (APPI Art. 35; `Removals.after_delivery`). A withdrawal queues removals only for what
the log already shows delivered, so this is what reaches the partner after the person
withdrew: a request pending under retries, or a dead letter replayed. Either the withdrawal
committed before the worker's check, which then sees it, or after the check began, when the
`delivered` entries were already committed and the withdrawal's own scan of the log sees
them: no order leaves the person at the partner (docs/provisions.md, "Removal on withdrawal").
The check is owed in the store from the `delivered` commit until it has run (migration 8): one
cut off by a crash, or failed on every retry, is run by the sweep at the next start or within
`removal_sweep_s`.

Start: `start()` picks up every pending row, including those of a previous run. Stop:
`stop(grace_s)` takes no new rows and lets the ones under way finish within the grace
period; whatever is cut off stays pending and is resumed by the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Protocol

import structlog
from tenacity import RetryCallState

from gateway.adapters.customer_match import INGEST_PATH, REMOVE_PATH
from gateway.contracts import PartnerContract
from gateway.cooperative import Priority, Steps, collected, in_slices
from gateway.delivery.outbox import (
    DeliveryMeta,
    DeliveryState,
    OutboxDone,
    PendingDelivery,
    SideWrite,
)
from gateway.delivery.retry import PermanentFailure, RetryableFailure, RetryPolicy, retrying
from gateway.delivery.transport import (
    HttpResponse,
    Transport,
    TransportError,
    is_redirect_status,
    is_retryable_status,
    retry_after_seconds,
)
from gateway.ledger.entries import Outcome
from gateway.ledger.store import LeafRecord
from gateway.ledger.templates import OutcomeEntries
from gateway.provisions.removal import Removals
from gateway.storage import Store

__all__ = ["OPERATION_PATHS", "DeliveryWorker", "OutcomeLog", "WorkerSettings"]

log = structlog.get_logger("gateway.delivery")

# adapter operation -> path appended to the contract's endpoint url
OPERATION_PATHS: Final[Mapping[str, str]] = {
    "ingest": INGEST_PATH,
    "remove": REMOVE_PATH,
    "upload": "/v1/uploads",
}
ERROR_TEXT_MAX: Final = 300
# The check for withdrawals after a delivery is tried this often before it is logged as failed
# (a store that is briefly unavailable must not leave a withdrawn person at the partner).
REMOVAL_CHECK_ATTEMPTS: Final = 5
REMOVAL_CHECK_WAIT_S: Final = 0.2  # doubled after each failed try
SWEEP_PAGE: Final = 100  # owed removal checks read at once


class OutcomeLog(Protocol):
    """What the worker needs of the ledger: an append with side writes."""

    async def append(
        self, records: Sequence[LeafRecord], outbox: Sequence[SideWrite] = ()
    ) -> int: ...


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 4  # requests in flight at once, over all partners
    poll_s: float = 0.5  # how often to look for due rows when nobody wakes the worker
    request_limit_s: float = 60.0  # one attempt's time limit (a 10,000-member upload)
    removal_sweep_s: float = 60.0  # how often owed removal checks are looked for (and at start)
    policy: RetryPolicy = field(default_factory=RetryPolicy)


class DeliveryWorker:
    def __init__(
        self,
        *,
        store: Store,
        ledger: OutcomeLog,
        contracts: Mapping[str, PartnerContract],
        transport: Transport,
        credentials: Callable[[str], str | None],
        clock: Callable[[], datetime],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        settings: WorkerSettings | None = None,
        removals: Removals,
        priority: Priority | None = None,
    ) -> None:
        """`priority`: whose urgent work (fraud checks) building a delivery's outcome
        entries waits for (gateway.cooperative); by default, nobody's."""
        self._store = store
        self._ledger = ledger
        self._contracts = contracts
        self._transport = transport
        self._credentials = credentials
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311  (jitter, not secrecy)
        self._settings = settings or WorkerSettings()
        self._wakeup = asyncio.Event()
        self._in_flight: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._sweep_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()  # set by stop(): take nothing new
        self._removals = removals  # the app's (Services.removals): who to remove again
        self._pause = (priority or Priority()).pause

    # lifecycle

    def start(self) -> None:
        """Begin delivering (pending rows of earlier runs included)."""
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._run(), name="delivery-worker")
            self._sweep_task = asyncio.create_task(self._sweep(), name="removal-check-sweep")

    def wake(self) -> None:
        """New rows were committed: look now rather than at the next poll."""
        self._wakeup.set()

    async def stop(self, grace_s: float = 10.0) -> None:
        """Take nothing new; let deliveries under way finish within `grace_s`, then cancel the
        rest (they stay pending and resume at the next start)."""
        self._stopping.set()
        self._wakeup.set()
        if self._loop_task is not None:
            await self._loop_task
        if self._sweep_task is not None:  # a check it cuts off stays owed, for the next start
            self._sweep_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweep_task
        tasks = list(self._in_flight.values())
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace_s)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def drain(self) -> None:
        """Wait until nothing is due or under way (tests, `gateway demo`, `outbox replay`)."""
        while True:
            if self._in_flight:
                await asyncio.wait(list(self._in_flight.values()))
                continue
            due = await self._store.due_deliveries(self._clock(), after_seq=0, limit=1)
            if not due:
                return
            self._wakeup.set()
            await self._sleep(0.05)

    # the loop

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._fill()
            except Exception:  # the store failed: say so, try again at the next poll
                log.exception("delivery_poll_failed")
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), self._settings.poll_s)

    async def _fill(self) -> None:
        free = self._settings.concurrency - len(self._in_flight)
        if free <= 0:
            return
        due = await self._store.due_deliveries(
            self._clock(), after_seq=0, limit=free, skip=frozenset(self._in_flight)
        )
        for row in due:
            if free <= 0 or self._stopping.is_set():
                break
            if row.delivery_id in self._in_flight:  # started since the query
                continue
            task = asyncio.create_task(self._deliver(row), name=f"deliver-{row.delivery_id}")
            self._in_flight[row.delivery_id] = task
            task.add_done_callback(self._done)
            free -= 1

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_flight = {k: t for k, t in self._in_flight.items() if t is not task}
        self._wakeup.set()  # a slot is free
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("delivery_task_failed", error=type(exc).__name__)

    # one row

    async def _deliver(self, row: PendingDelivery) -> None:
        contract = self._contracts.get(row.partner_id)
        if contract is None:  # the contract was removed: nothing may leave for this partner
            await self._finish(row, DeliveryState.DEAD, row.attempts, "no contract for partner")
            return
        attempts = row.attempts
        policy = self._settings.policy
        left = max(policy.max_attempts - attempts, 1)

        async def before_sleep(state: RetryCallState) -> None:
            await self._retrying(row, row.attempts + state.attempt_number, state)

        controller = retrying(
            RetryPolicy(left, policy.initial_s, policy.max_s, policy.jitter_s),
            sleep=self._sleep,
            rng=self._rng,
            before_sleep=before_sleep,
        )

        try:
            async for attempt in controller:
                with attempt:
                    attempts = row.attempts + attempt.retry_state.attempt_number
                    await self._send(contract, row)
        except (TransportError, RetryableFailure, PermanentFailure) as exc:
            await self._finish(row, DeliveryState.DEAD, attempts, _error_text(exc))
            return
        meta = await self._finish(row, DeliveryState.DELIVERED, attempts, None)
        # Only a delivered ingest owes a removal check (sqlite_outbox._DONE marks it): a
        # remove or an export upload would cost a check and a commit for nothing.
        if meta is not None and row.operation == "ingest":
            await self._remove_stopped(row, meta)

    async def _remove_stopped(self, row: PendingDelivery, meta: DeliveryMeta) -> None:
        """Who in the delivered ingest has withdrawn or asked to stop since is removed again
        (APPI Art. 35). It runs once the `delivered` entries are committed: see the module
        docstring for why no withdrawal can then slip between. A failure is retried, then
        logged as an error; the check stays owed, and the sweep runs it again."""
        wait = REMOVAL_CHECK_WAIT_S
        for attempt in range(1, REMOVAL_CHECK_ATTEMPTS + 1):
            try:
                queued = await self._removals.after_delivery(row, meta)
                await self._store.removal_checked(row.delivery_id)
            except Exception as exc:  # the store or the log failed: try again, then say so
                if attempt == REMOVAL_CHECK_ATTEMPTS:
                    log.error(
                        "removal_check_failed",
                        delivery_id=row.delivery_id,
                        partner=row.partner_id,
                        error=_error_text(exc),
                    )
                    return
                await self._sleep(wait)
                wait *= 2
                continue
            if queued:
                self._wakeup.set()  # the remove requests are due now
            return

    async def _sweep(self) -> None:
        """Run the removal checks owed (migration 8) at start, then every removal_sweep_s."""
        while not self._stopping.is_set():
            try:
                await self.run_owed_checks()
            except Exception:  # the store failed: the checks stay owed; say so, try later
                log.exception("removal_sweep_failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._settings.removal_sweep_s)

    async def run_owed_checks(self) -> None:
        """The owed checks no delivery of this worker is running: those a crash cut off or
        that failed every retry. One run twice (a delivery that ended meanwhile, another
        instance's sweep) queues nothing twice (Removals)."""
        after, ran = 0, 0
        while not self._stopping.is_set():
            rows = await self._store.removal_checks_owed(after_seq=after, limit=SWEEP_PAGE)
            for row in rows:
                if row.delivery_id not in self._in_flight:
                    meta = await in_slices(DeliveryMeta.decoded(row.meta), self._pause)
                    await self._remove_stopped(row, meta)
                    ran += 1
            if len(rows) < SWEEP_PAGE:
                break
            after = rows[-1].seq
        if ran:  # a crash or a failing store had left them: worth an operator's notice
            log.info("removal_checks_resumed", deliveries=ran)

    async def _send(self, contract: PartnerContract, row: PendingDelivery) -> HttpResponse:
        """One attempt. Raises TransportError, RetryableFailure, PermanentFailure."""
        headers = {"Content-Type": row.content_type, "Idempotency-Key": row.delivery_id}
        secret = self._credentials(contract.endpoint.credential_ref)
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        url = contract.endpoint.url.rstrip("/") + OPERATION_PATHS[row.operation]
        response = await self._transport.post(
            url, row.payload, headers=headers, limit_s=self._settings.request_limit_s
        )
        if response.ok:
            return response
        if is_retryable_status(response.status):
            wait = retry_after_seconds(response.headers.get("Retry-After"), self._clock())
            raise RetryableFailure(
                f"partner answered {response.status}", status=response.status, retry_after=wait
            )
        if is_redirect_status(response.status):  # data goes to the contract's endpoint only
            why = f"partner redirected ({response.status}); not followed"
            raise PermanentFailure(why, status=response.status)
        raise PermanentFailure(f"partner refused: {response.status}", status=response.status)

    async def _retrying(self, row: PendingDelivery, attempts: int, state: RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome else None
        wait = state.upcoming_sleep or 0.0
        now = self._clock()
        log.info(
            "delivery_retry",
            delivery_id=row.delivery_id,
            partner=row.partner_id,
            attempts=attempts,
            wait_s=round(wait, 3),
            error=type(failure).__name__ if failure else None,
        )
        await self._store.record_attempt(
            row.delivery_id,
            attempts=attempts,
            next_attempt_at=now + timedelta(seconds=wait),
            error=_error_text(failure) if failure else "",
            now=now,
        )

    async def _finish(
        self, row: PendingDelivery, state: DeliveryState, attempts: int, error: str | None
    ) -> DeliveryMeta | None:
        """The outcome entries of the row's subjects and its new state, in one append, once
        durable; returns the row's meta (None when its contract is gone)."""
        now = self._clock()
        done = OutboxDone(row.delivery_id, state, attempts, error, now)
        contract = self._contracts.get(row.partner_id)
        meta: DeliveryMeta | None = None
        records: list[LeafRecord] = []
        if contract is not None:  # a row whose contract is gone cannot say what it was
            # 10,000 subjects a row: in slices, so a fraud check need not wait for them all
            meta = await in_slices(DeliveryMeta.decoded(row.meta), self._pause)
            steps = self._outcome_records(row, contract, meta, state, error, now)
            records = await in_slices(steps, self._pause)
        if records:
            await self._ledger.append(records, outbox=[done])
        else:
            await self._store.apply_side_writes([done])
        log.info(
            "delivery_done",
            delivery_id=row.delivery_id,
            partner=row.partner_id,
            state=state.value,
            attempts=attempts,
            entries=len(records),
        )
        return meta

    @staticmethod
    def _outcome_records(
        row: PendingDelivery,
        contract: PartnerContract,
        meta: DeliveryMeta,
        state: DeliveryState,
        error: str | None,
        now: datetime,
    ) -> Steps[list[LeafRecord]]:
        delivered = state is DeliveryState.DELIVERED
        reasons = () if delivered else ({"code": "delivery_failed", "message": error or ""},)
        entries = OutcomeEntries(
            contract=contract,
            purpose=meta.purpose,
            legal_basis=meta.legal_basis,
            outcome=Outcome.DELIVERED if delivered else Outcome.FAILED,
            operation=row.operation,
            transfer_id=row.transfer_id,
            delivery_id=row.delivery_id,
            time=now,
            reasons=reasons,
        )
        return (
            yield from collected(
                entries.record(
                    subject_id=subject, subject_key=key, payload_sha256=sha, refers_to=index
                )
                for index, (subject, key, sha) in enumerate(meta.subjects, row.first_index)
            )
        )


def _error_text(exc: BaseException) -> str:
    """A short, value-free account of a failure for the row and the log."""
    return f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_MAX]
