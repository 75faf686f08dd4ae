"""The delivery side of a Store: jobs, the outbox, rejections (both backends).

The statements live in sqlite_outbox.py and postgres_outbox.py; these mixins give them the
store's async shape. SqliteStore provides `_run` (its worker thread, where sqlite3 errors
become StorageError); PostgresStore provides `_pg` (its pool, where asyncpg errors do).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from functools import partial
from typing import Any, Protocol, TypeVar

from gateway.delivery.outbox import (
    DeliveryState,
    JobRecord,
    NewJob,
    PendingDelivery,
    Rejection,
    SideWrite,
)
from gateway.storage import postgres_outbox as pg
from gateway.storage import sqlite_outbox as lite
from gateway.storage.rejections_schema_v7 import FIRST_KEY, RejectionKey

T = TypeVar("T")


class DeliveryStore(Protocol):
    def exclusive(self, name: str) -> AbstractAsyncContextManager[None]:
        """Held by one caller at a time, for `name`: in this process, and across processes on
        PostgreSQL (an advisory lock). What reads, then writes what it read: feeding a job
        from its resume point ("job:<id>"; a second submission of its idempotency key waits,
        then reads the resume point afresh), queueing removals ("removals")."""

    async def create_job(self, job: NewJob) -> tuple[JobRecord, bool]:
        """Store a new job unless its (client, idempotency key) exists: the stored job and
        whether it is new. Raises StorageError."""

    async def get_job(self, job_id: str) -> JobRecord | None: ...

    async def job_of_transfer(self, transfer_id: str) -> JobRecord | None: ...

    async def job_rejections(
        self, job_id: str, *, after: RejectionKey = FIRST_KEY, limit: int
    ) -> list[tuple[RejectionKey, Rejection]]:
        """At most `limit` of the job's rejections, each with its key (line, ordinal), in
        key order: the line's in the order they were made. The next page is the one `after`
        the last key of this one. Raises StorageError."""

    async def apply_side_writes(self, writes: Sequence[SideWrite]) -> None:
        """Outbox/job writes in one transaction with no log entries. Raises StorageError."""

    async def due_deliveries(
        self, now: datetime, *, after_seq: int, limit: int, skip: Collection[str] = ()
    ) -> list[PendingDelivery]:
        """Pending rows due at `now`, oldest first, at most `limit`, none of `skip`."""

    async def deliveries_in_state(
        self, state: DeliveryState, *, after_seq: int, limit: int
    ) -> list[PendingDelivery]: ...

    async def delivery(self, delivery_id: str) -> PendingDelivery | None:
        """One outbox row by its id, whatever its state."""

    async def deliveries_of_transfer(self, transfer_id: str) -> list[PendingDelivery]: ...

    async def removal_checks_owed(self, *, after_seq: int, limit: int) -> list[PendingDelivery]:
        """Delivered ingests whose check for withdrawals since is owed (migration 8), oldest
        first, at most `limit` after `after_seq`. Raises StorageError."""

    async def removal_checked(self, delivery_id: str) -> None:
        """The row's check for withdrawals has run. Raises StorageError."""

    async def record_attempt(
        self,
        delivery_id: str,
        *,
        attempts: int,
        next_attempt_at: datetime,
        error: str,
        now: datetime,
    ) -> None: ...

    async def replay_dead(self, delivery_ids: Sequence[str], now: datetime) -> int:
        """Dead letters back to pending; how many moved."""


class KeyedLocks:
    """An asyncio.Lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def _locks(store: object) -> KeyedLocks:
    """The store's KeyedLocks (made on first use: the mixins have no __init__ of their own)."""
    locks: KeyedLocks = store.__dict__.setdefault("_exclusive_locks", KeyedLocks())
    return locks


class SqliteDeliveryMixin:
    async def _run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        raise NotImplementedError  # SqliteStore's

    def exclusive(self, name: str) -> AbstractAsyncContextManager[None]:
        """One process writes a SQLite database: a lock of this process is enough."""
        return _locks(self).hold(name)

    async def create_job(self, job: NewJob) -> tuple[JobRecord, bool]:
        return await self._run(partial(lite.create_job, job=job))

    async def get_job(self, job_id: str) -> JobRecord | None:
        return await self._run(partial(lite.get_job, job_id=job_id))

    async def job_of_transfer(self, transfer_id: str) -> JobRecord | None:
        return await self._run(partial(lite.job_of_transfer, transfer_id=transfer_id))

    async def job_rejections(
        self, job_id: str, *, after: RejectionKey = FIRST_KEY, limit: int
    ) -> list[tuple[RejectionKey, Rejection]]:
        op = partial(lite.job_rejections, job_id=job_id, after=after, limit=limit)
        return await self._run(op)

    async def apply_side_writes(self, writes: Sequence[SideWrite]) -> None:
        await self._run(partial(lite.apply_side_writes, writes=writes))

    async def due_deliveries(
        self, now: datetime, *, after_seq: int, limit: int, skip: Collection[str] = ()
    ) -> list[PendingDelivery]:
        op = partial(lite.due_deliveries, now=now, after_seq=after_seq, limit=limit, skip=skip)
        return await self._run(op)

    async def deliveries_in_state(
        self, state: DeliveryState, *, after_seq: int, limit: int
    ) -> list[PendingDelivery]:
        op = partial(lite.deliveries_in_state, state=state, after_seq=after_seq, limit=limit)
        return await self._run(op)

    async def delivery(self, delivery_id: str) -> PendingDelivery | None:
        return await self._run(partial(lite.delivery, delivery_id=delivery_id))

    async def deliveries_of_transfer(self, transfer_id: str) -> list[PendingDelivery]:
        return await self._run(partial(lite.deliveries_of_transfer, transfer_id=transfer_id))

    async def removal_checks_owed(self, *, after_seq: int, limit: int) -> list[PendingDelivery]:
        return await self._run(partial(lite.removal_checks_owed, after_seq=after_seq, limit=limit))

    async def removal_checked(self, delivery_id: str) -> None:
        await self._run(partial(lite.removal_checked, delivery_id=delivery_id))

    async def record_attempt(
        self,
        delivery_id: str,
        *,
        attempts: int,
        next_attempt_at: datetime,
        error: str,
        now: datetime,
    ) -> None:
        await self._run(
            partial(
                lite.record_attempt,
                delivery_id=delivery_id,
                attempts=attempts,
                next_attempt_at=next_attempt_at,
                error=error,
                now=now,
            )
        )

    async def replay_dead(self, delivery_ids: Sequence[str], now: datetime) -> int:
        return await self._run(partial(lite.replay_dead, delivery_ids=delivery_ids, now=now))


class PostgresDeliveryMixin:
    async def _pg(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        raise NotImplementedError  # PostgresStore's: fn(pool, *args, **kwargs), translated

    @asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """This process's lock, then a session advisory lock on a connection of its own for
        the other instances (released by PostgreSQL if the connection dies)."""
        key = int.from_bytes(hashlib.sha256(b"gateway:" + name.encode()).digest()[:8],
                             "big", signed=True)  # fmt: skip
        async with _locks(self).hold(name):
            conn = await self._pg(pg.acquire)
            try:
                await self._pg(pg.advisory_lock, conn, key)
                try:
                    yield
                finally:
                    await self._pg(pg.advisory_unlock, conn, key)
            finally:
                await self._pg(pg.release, conn)

    async def create_job(self, job: NewJob) -> tuple[JobRecord, bool]:
        return await self._pg(pg.create_job, job)

    async def get_job(self, job_id: str) -> JobRecord | None:
        return await self._pg(pg.get_job, job_id)

    async def job_of_transfer(self, transfer_id: str) -> JobRecord | None:
        return await self._pg(pg.job_of_transfer, transfer_id)

    async def job_rejections(
        self, job_id: str, *, after: RejectionKey = FIRST_KEY, limit: int
    ) -> list[tuple[RejectionKey, Rejection]]:
        return await self._pg(pg.job_rejections, job_id, after=after, limit=limit)

    async def apply_side_writes(self, writes: Sequence[SideWrite]) -> None:
        await self._pg(pg.apply_side_writes, writes)

    async def due_deliveries(
        self, now: datetime, *, after_seq: int, limit: int, skip: Collection[str] = ()
    ) -> list[PendingDelivery]:
        return await self._pg(pg.due_deliveries, now, after_seq=after_seq, limit=limit, skip=skip)

    async def deliveries_in_state(
        self, state: DeliveryState, *, after_seq: int, limit: int
    ) -> list[PendingDelivery]:
        return await self._pg(pg.deliveries_in_state, state, after_seq=after_seq, limit=limit)

    async def delivery(self, delivery_id: str) -> PendingDelivery | None:
        return await self._pg(pg.delivery, delivery_id)

    async def deliveries_of_transfer(self, transfer_id: str) -> list[PendingDelivery]:
        return await self._pg(pg.deliveries_of_transfer, transfer_id)

    async def removal_checks_owed(self, *, after_seq: int, limit: int) -> list[PendingDelivery]:
        return await self._pg(pg.removal_checks_owed, after_seq=after_seq, limit=limit)

    async def removal_checked(self, delivery_id: str) -> None:
        await self._pg(pg.removal_checked, delivery_id)

    async def record_attempt(
        self,
        delivery_id: str,
        *,
        attempts: int,
        next_attempt_at: datetime,
        error: str,
        now: datetime,
    ) -> None:
        await self._pg(
            pg.record_attempt,
            delivery_id,
            attempts=attempts,
            next_attempt_at=next_attempt_at,
            error=error,
            now=now,
        )

    async def replay_dead(self, delivery_ids: Sequence[str], now: datetime) -> int:
        return await self._pg(pg.replay_dead, delivery_ids, now)
