"""`gateway clients`: create, list and revoke API clients directly in the store.

`create` prints the new API key on stdout as its only output, so it can be captured:
`KEY=$(gateway clients create --name ops --role admin)`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from gateway.contracts import load_contracts
from gateway.models import Role, japan_date
from gateway.runtime import open_storage, utc_now
from gateway.settings import Settings
from gateway.web.auth import client_partner_problems, mint_client


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser("clients", help="manage API clients")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create a client and print its API key")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument(
        "--partner",
        action="append",
        default=[],
        help="partner id a sender may send to; a recipient's one partner",
    )
    create.set_defaults(func=lambda a: asyncio.run(_create(a)))
    listing = actions.add_parser("list", help="list clients (never their keys)")
    listing.set_defaults(func=lambda a: asyncio.run(_list()))
    revoke = actions.add_parser("revoke", help="revoke a client's key")
    revoke.add_argument("client_id")
    revoke.set_defaults(func=lambda a: asyncio.run(_revoke(a.client_id)))


async def _create(args: argparse.Namespace) -> int:
    settings = Settings.from_env(os.environ)
    role = Role(args.role)
    partners = tuple(args.partner)
    known = load_contracts(settings.partners_dir, japan_date(utc_now()))
    if errors := client_partner_problems(role, partners, known):
        for error in errors:
            print(f"gateway: --partner: {error.detail}", file=sys.stderr)
        return 2
    record, key = mint_client(name=args.name, role=role, partners=partners, now=utc_now())
    store = await open_storage(settings)
    try:
        await store.create_client(record)
    finally:
        await store.close()
    print(key)
    return 0


async def _list() -> int:
    store = await open_storage(Settings.from_env(os.environ))
    try:
        for c in await store.list_clients():
            state = f"revoked {c.revoked_at.isoformat()}" if c.revoked_at else "active"
            print(f"{c.client_id}  {c.role:<10} {c.name}  [{','.join(c.partners)}]  {state}")
    finally:
        await store.close()
    return 0


async def _revoke(client_id: str) -> int:
    store = await open_storage(Settings.from_env(os.environ))
    try:
        done = await store.revoke_client(client_id, utc_now())
    finally:
        await store.close()
    if not done:
        print(f"gateway: no active client {client_id}", file=sys.stderr)
        return 1
    return 0
