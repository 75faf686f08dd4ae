"""`gateway demo`: the whole gateway in a minute, with no setup.

Runs the service on the embedded default (SQLite, a keyring created on the spot) in a fresh
temporary home, with the partner simulators mounted and the sample contracts pointed at them,
then, over HTTP like any client:

1. grants some people consent for Customer Match and withdraws another's;
2. uploads an audience to Google (simulated): who was sent, who was refused and why;
3. runs a fraud check (synchronous verdict, logged as provision and receipt);
4. exports members to the point program (Shift_JIS file), which posts back a summary;
5. withdraws one uploaded person's consent: the gateway asks Google to remove them;
6. ends with `gateway ledger verify` over everything that was logged.

`--keep DIR` keeps the home (database, keys, contracts) for a look afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from gateway.cli.ledger import verifier_keys, verify_store
from gateway.ledger.verify import Verifier
from gateway.logconfig import configure_logging
from gateway.models import Role
from gateway.runtime import open_services, utc_now
from gateway.settings import Settings
from gateway.web import make_app
from gateway.web.auth import mint_client
from gateway.web.server import GatewayRunner
from gateway.web.services import Services

REPO_PARTNERS = Path(__file__).resolve().parents[2] / "partners"
GRANT = {
    "notice_version": "privacy-notice-2026-04",
    "obtained_at": "2026-04-01T09:30:00+09:00",
    "channel": "web",
    "foreign_disclosure_version": "us-google-2025-04",
}
PEOPLE = [
    {"subject_id": "demo-001", "email": "Hanako.Sato@Example.jp", "phone": "090-1234-5678"},
    {"subject_id": "demo-002", "email": "taro.yamada@example.jp"},
    {"subject_id": "demo-003", "email": "jiro@example.jp", "phone": "+81 80 1111 2222"},
    {"subject_id": "demo-004", "email": "no-consent@example.jp"},
    {"subject_id": "demo-005", "email": "withdrew@example.jp"},
    {"subject_id": "demo-006", "phone": "not a phone number"},
]


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="run every provision against the partner simulators, then verify the log",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="use and keep this home (a new or empty folder)"
    )
    parser.set_defaults(func=lambda a: asyncio.run(_main(a)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _contracts(folder: Path, base: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for source in REPO_PARTNERS.glob("*.toml"):
        text = source.read_text(encoding="utf-8")
        (folder / source.name).write_text(
            text.replace("http://127.0.0.1:8080", base), encoding="utf-8"
        )
    return folder


def say(title: str, payload: Any = None) -> None:
    print(f"\n== {title}")
    if payload is not None:
        print(json.dumps(payload, indent=2, ensure_ascii=False))


async def _main(args: argparse.Namespace) -> int:
    if args.keep is not None and args.keep.exists() and any(args.keep.iterdir()):
        # The story's consents and uploads would meet an earlier run's: what it prints would
        # no longer be what happened.
        print(f"gateway demo: --keep {args.keep} is not empty; name a new folder", file=sys.stderr)
        return 2
    home = args.keep or Path(tempfile.mkdtemp(prefix="gateway-demo-"))
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    settings = Settings.from_env(
        {},
        home=home / "var",
        keys_dir=home / "keys",
        partners_dir=_contracts(home / "partners", base),
        log_format="console",
        log_level="warning",
    )
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    services = await open_services(settings)
    runner = GatewayRunner(make_app(services), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        kept = "kept" if args.keep is not None else "removed at the end; --keep DIR keeps one"
        print(f"gateway demo: service at {base}, home {home} ({kept})")
        keys = await _clients(services)
        async with aiohttp.ClientSession(base_url=base) as http:
            await _story(http, keys, services, base)
    finally:
        await runner.cleanup()
        code = await _verify(services)
        await services.store.close()
        if args.keep is None:
            shutil.rmtree(home, ignore_errors=True)
    return code


async def _clients(services: Services) -> dict[str, str]:
    keys = {}
    for name, role, partners in (
        ("admin", Role.ADMIN, ()),
        ("sender", Role.SENDER, ("google-customer-match", "sample-point-program")),
        ("fraud", Role.FRAUD, ()),
        ("compliance", Role.COMPLIANCE, ()),
    ):
        record, key = mint_client(name=f"demo-{name}", role=role, partners=partners, now=utc_now())
        await services.store.create_client(record)
        keys[name] = key
    recipient = getattr(Role, "RECIPIENT", None)
    if recipient is not None:  # the point program's own credential, for its summary
        record, key = mint_client(
            name="demo-point-program", role=recipient, partners=("sample-point-program",),
            now=utc_now(),
        )  # fmt: skip
        await services.store.create_client(record)
        keys["recipient"] = key
    return keys


Call = Callable[..., Awaitable[Any]]


def _caller(http: aiohttp.ClientSession, keys: dict[str, str]) -> Call:
    async def call(method: str, path: str, who: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {keys[who]}"}
        async with http.request(method, path, json=body, headers=headers) as resp:
            text = await resp.text()
            try:
                return json.loads(text) if text else None
            except ValueError:
                return text

    return call


async def _story(
    http: aiohttp.ClientSession, keys: dict[str, str], services: Services, base: str
) -> None:
    call = _caller(http, keys)
    for person in ("demo-001", "demo-002", "demo-003", "demo-005", "demo-006"):
        await call("PUT", f"/v1/subjects/{person}/consents/ad_customer_match", "admin", GRANT)
    await call("PUT", "/v1/subjects/demo-002/consents/ad_personalization", "admin", GRANT)
    await call("DELETE", "/v1/subjects/demo-005/consents/ad_customer_match", "admin")
    say("1. consents: demo-001..003 and 006 granted, demo-005 withdrew, demo-004 never asked;")
    say("   demo-002 also allowed ad personalization (its members go as adPersonalization granted)")
    job = await call(
        "POST",
        "/v1/provisions/customer-match",
        "sender",
        {"partner": "google-customer-match", "destination": "default",
         "purpose": "ad_customer_match", "legal_basis": "consent",
         "idempotency_key": "demo-upload-1", "records": PEOPLE},
    )  # fmt: skip
    job = await _settled(call, job["job_id"])
    say("2. customer match upload: the job", {k: job[k] for k in ("state", "counts")})
    rejections = await call("GET", f"/v1/jobs/{job['job_id']}/rejections", "sender")
    say("   not sent, and why (never the values)")
    print(rejections.strip() if isinstance(rejections, str) else rejections)
    google = services.sandbox.stats()["google-datamanager"]
    say("   what Google's (simulated) Data Manager API accepted", google)
    await _fraud(call)
    await _export(call, keys, base)
    await call("DELETE", "/v1/subjects/demo-001/consents/ad_customer_match", "admin")
    await asyncio.sleep(1.0)  # the worker sends the removal
    say("5. demo-001 withdrew: removals accepted by Google",
        services.sandbox.stats()["google-datamanager"].get("removed_members"))  # fmt: skip
    report = await call("GET", "/v1/subjects/demo-001/disclosures", "compliance")
    say("   demo-001's Art. 33(5) disclosure report", report)


async def _settled(call: Call, job_id: str) -> Any:
    for _ in range(200):
        job = await call("GET", f"/v1/jobs/{job_id}", "sender")
        if job["state"] in ("done", "failed"):
            return job
        await asyncio.sleep(0.05)
    return job


async def _fraud(call: Call) -> None:
    verdict = await call(
        "POST",
        "/v1/fraud-checks",
        "fraud",
        {"partner": "sample-fraud-provider", "subject_id": "demo-002",
         "order": {"order_id": "A-1001", "amount": 12800, "currency": "JPY",
                   "card_bin": "411111", "email": "taro.yamada@example.jp",
                   "gift_message": "not in the contract: dropped"}},
    )  # fmt: skip
    say("3. fraud check (synchronous)", verdict)


async def _export(call: Call, keys: dict[str, str], base: str) -> None:
    people = [
        {"subject_id": f"member-{n:03d}", "member_id": f"M{n:05d}",
         "email": f"m{n}@example.jp", "birth_year": str(1990 + n % 3),
         "gender": "f" if n % 2 else "m", "postal_code": "100-0001"}
        for n in range(1, 25)
    ]  # fmt: skip
    for person in people[:-2]:  # the last two never consented: refused
        subject = person["subject_id"]
        await call("PUT", f"/v1/subjects/{subject}/consents/attribute_estimation", "admin", GRANT)
    # The simulated recipient posts its summary back with its own credential; the honest
    # recipient drops cells under the minimum count itself.
    callback = f"{base}/v1/partners/sample-point-program/summaries"
    await call(
        "POST", "/sandbox/_control/summary-callback", "admin",
        {"url": callback, "api_key": keys.get("recipient", ""), "delay_s": 0.2, "mode": "ok"},
    )  # fmt: skip
    job = await call(
        "POST", "/v1/exports/attribute-estimation", "sender",
        {"partner": "sample-point-program", "idempotency_key": "demo-export-1",
         "records": people},
    )  # fmt: skip
    job = await _settled(call, job["job_id"])
    say("4. attribute-estimation export (Shift_JIS file)", {k: job[k] for k in ("state", "counts")})
    await asyncio.sleep(1.0)
    summaries = await call("GET", "/v1/partners/sample-point-program/summaries", "sender")
    say("   the statistical summary the recipient posted back", summaries)


async def _verify(services: Services) -> int:
    settings = services.settings
    checkpoints = await services.store.ledger_checkpoints()
    verifier = Verifier(
        checkpoints,
        vkeys=verifier_keys(settings),
        origin=settings.log_origin,
        as_of=services.clock().date(),
    )
    report = await verify_store(services.store, verifier)
    say("6. gateway ledger verify")
    if report.failure is not None:
        print(f"FAILED: {report.failure}", file=sys.stderr)
        return 1
    print(f"ok: {report.entries} entries, {report.checkpoints} checkpoints verified")
    return 0
