"""Migration 8: an ingest's check for withdrawals after its delivery is owed until it is done.

After the worker logs an ingest request as delivered it asks whether anyone in it has since
withdrawn consent or asked to stop provision, and queues their removal (gateway/delivery/
worker.py). That check ran in memory only: a process that died between the `delivered` commit
and the check's end (or a check that failed every retry) left a withdrawn person at the
partner with nothing to show it was never done. Now

    outbox.removal_check    1 (PostgreSQL: true) while the row's check is owed: set in the
                            transaction that records the ingest as delivered, cleared once
                            the check has run (removals queued, or nobody to remove)

and the worker runs every owed check at start and then periodically, so a check is never
lost. Running one twice is harmless: removals are queued one call at a time and never for
a delivered entry that a removal already refers to (gateway/provisions/removal.py).

Rows already delivered when the migration runs owe their check too: it may have been lost
before the column existed, and the first start after the upgrade runs it once.

Frozen once released, like every migration.
"""

from __future__ import annotations

from typing import Final

__all__ = ["POSTGRES_V8", "SQLITE_V8", "V8_NAME"]

V8_NAME: Final = "outbox: the removal check owed after an ingest's delivery"

SQLITE_V8: Final[tuple[str, ...]] = (
    """ALTER TABLE outbox ADD COLUMN removal_check INTEGER NOT NULL DEFAULT 0
        CHECK (removal_check IN (0, 1))""",
    "UPDATE outbox SET removal_check = 1 WHERE state = 'delivered' AND operation = 'ingest'",
    "CREATE INDEX outbox_removal_check ON outbox (seq) WHERE removal_check = 1",
)

POSTGRES_V8: Final[tuple[str, ...]] = (
    "ALTER TABLE outbox ADD COLUMN removal_check boolean NOT NULL DEFAULT false",
    "UPDATE outbox SET removal_check = true WHERE state = 'delivered' AND operation = 'ingest'",
    "CREATE INDEX outbox_removal_check ON outbox (seq) WHERE removal_check",
)
