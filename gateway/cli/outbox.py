"""`gateway outbox`: what waits to be delivered, and dead letters sent again.

    gateway outbox list [--state dead|pending|delivered]
    gateway outbox replay (--all | DELIVERY_ID ...)

`replay` moves dead letters back to pending with their attempts reset; a running service's
delivery worker picks them up at its next poll and sends the same bytes under the same
idempotency key, so a partner that already took one does not take it twice. It exits 1 when
a named id is not a dead letter (unknown, or pending or delivered already).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any, Final

from gateway.delivery.outbox import DeliveryState
from gateway.runtime import open_storage, utc_now
from gateway.settings import Settings

PAGE: Final = 1000


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("outbox", help="deliveries and dead letters")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="deliveries in one state, as JSON lines")
    listing.add_argument("--state", choices=[s.value for s in DeliveryState], default="dead")
    listing.set_defaults(func=lambda a: asyncio.run(_list(DeliveryState(a.state))))
    replay = actions.add_parser("replay", help="send dead letters again")
    replay.add_argument("ids", nargs="*", metavar="DELIVERY_ID")
    replay.add_argument("--all", action="store_true", help="every dead letter")
    replay.set_defaults(func=lambda a: asyncio.run(_replay(a)))


async def _list(state: DeliveryState) -> int:
    store = await open_storage(Settings.from_env(os.environ))
    try:
        after = 0
        while page := await store.deliveries_in_state(state, after_seq=after, limit=PAGE):
            for row in page:
                line = {
                    "delivery_id": row.delivery_id,
                    "partner": row.partner_id,
                    "operation": row.operation,
                    "job_id": row.job_id,
                    "entries": row.entry_count,
                    "attempts": row.attempts,
                    "last_error": row.last_error,
                }
                print(json.dumps(line))
            after = page[-1].seq
    finally:
        await store.close()
    return 0


async def _replay(args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        print("gateway outbox replay: name delivery ids or pass --all", file=sys.stderr)
        return 2
    store = await open_storage(Settings.from_env(os.environ))
    try:
        ids: list[str] = list(args.ids)
        if args.all:
            after = 0
            while page := await store.deliveries_in_state(
                DeliveryState.DEAD, after_seq=after, limit=PAGE
            ):
                ids.extend(row.delivery_id for row in page)
                after = page[-1].seq
        moved = await store.replay_dead(ids, utc_now())
    finally:
        await store.close()
    print(f"{moved} dead letter(s) back to pending")
    if moved < len(ids):  # only named ids can miss: --all lists dead letters
        print(f"{len(ids) - moved} id(s) were not dead letters", file=sys.stderr)
        return 1
    return 0
