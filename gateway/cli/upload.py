"""`gateway upload`: stream a CSV (or JSONL) file to the service as a Customer Match upload.

    gateway upload --partner google-customer-match --destination default members.csv

The file goes in one streamed request (no size limit, constant memory) with a progress bar on
a terminal; the service decides, records and queues every record before it answers, then the
command follows the job until its deliveries are done and prints the outcome counts.

The idempotency key defaults to the SHA-256 of the file's bytes: running the same file again
never uploads it twice. When the connection breaks mid-upload (the service restarted), the
command sends the file again under the same key, up to --retries times: the service skips the
records it had already committed and takes the rest.

Exit status: 0 when the job is done, 1 when it failed (some deliveries are dead letters),
2 when the upload was refused (the problem is printed), the service could not be reached, or
what answered is not the gateway (one line naming the URL and the HTTP status).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final, NoReturn
from urllib.parse import urlencode

import aiohttp

from gateway.errors import PROBLEM_MEDIA_TYPE

CHUNK: Final = 1 << 18
POLL_S: Final = 0.5
DEFAULT_URL: Final = "http://127.0.0.1:8080"


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "upload",
        help="upload a CSV/JSONL file of records to a Customer Match partner",
        description=__doc__.split("\n\n", 2)[2] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("file", type=Path, help="CSV with a header row (or .jsonl)")
    parser.add_argument("--partner", required=True)
    parser.add_argument("--destination", default="default")
    parser.add_argument("--purpose", default="ad_customer_match")
    parser.add_argument("--legal-basis", default="consent")
    parser.add_argument("--idempotency-key", help="default: SHA-256 of the file")
    parser.add_argument(
        "--url", default=os.environ.get("GATEWAY_URL", DEFAULT_URL), help="($GATEWAY_URL)"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("GATEWAY_API_KEY", ""),
        help="a sender client's key ($GATEWAY_API_KEY)",
    )
    parser.add_argument("--retries", type=int, default=5, help="resends after a broken upload")
    parser.add_argument("--no-wait", action="store_true", help="do not follow the deliveries")
    parser.set_defaults(func=lambda a: asyncio.run(_main(a)))


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class Progress:
    """A one-line progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.started = time.monotonic()
        self.shown = 0.0
        self.live = sys.stderr.isatty()

    def add(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if self.live and (now - self.shown > 0.1 or self.done >= self.total):
            self.shown = now
            share = self.done / self.total
            rate = self.done / max(now - self.started, 1e-6) / 1e6
            bar = "#" * int(share * 30)
            print(f"\r[{bar:<30}] {share:6.1%} {rate:6.1f} MB/s", end="", file=sys.stderr)

    def end(self) -> None:
        """The bar's line is finished (once)."""
        if self.live:
            print(file=sys.stderr)
            self.live = False


async def _chunks(path: Path, progress: Progress) -> AsyncIterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            progress.add(len(chunk))
            yield chunk
            await asyncio.sleep(0)


def _media(path: Path) -> str | None:
    """The body's media type by the file's suffix; None for a .json file (one JSON document,
    which the service does not stream: it takes JSON lines or CSV)."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return None
    return "application/x-ndjson" if suffix in (".jsonl", ".ndjson") else "text/csv"


class NotTheGateway(Exception):
    """What answered is not the gateway's API: not JSON, or not the answer the API gives."""


def is_job(body: Any) -> bool:
    """A job as the gateway answers it: enough for this command to follow and report it."""
    return (
        isinstance(body, dict)
        and isinstance(body.get("job_id"), str)
        and isinstance(body.get("state"), str)
        and isinstance(body.get("counts"), dict)
        and all(isinstance(body["counts"].get(k), int) for k in ("allowed", "delivered", "failed"))
    )


def _not_the_gateway(resp: aiohttp.ClientResponse, where: str, expected: str) -> NotTheGateway:
    media = resp.content_type or "no media type"
    return NotTheGateway(
        f"{where} answered HTTP {resp.status} ({media}), not {expected}: is --url the gateway?"
    )


async def _json(resp: aiohttp.ClientResponse) -> Any:
    """The answer's JSON; None when it is not JSON (or not UTF-8)."""
    try:
        return await resp.json(content_type=None)
    except ValueError:
        return None


async def _job(resp: aiohttp.ClientResponse, where: str) -> Any:
    """The job in an answer. Raises NotTheGateway naming `where` and the status."""
    body = await _json(resp)
    if not is_job(body):
        raise _not_the_gateway(resp, where, "a job as the gateway answers it")
    return body


async def _refusal(resp: aiohttp.ClientResponse, where: str) -> NoReturn:
    """Print the gateway's problem (RFC 9457) and raise SystemExit(2); raises NotTheGateway
    for any other answer (a proxy's page, another service's error)."""
    body = await _json(resp) if resp.content_type == PROBLEM_MEDIA_TYPE else None
    if not isinstance(body, dict):
        raise _not_the_gateway(resp, where, "a problem document")
    print(json.dumps(body, indent=2, ensure_ascii=False), file=sys.stderr)
    raise SystemExit(2)


async def _send(session: aiohttp.ClientSession, args: argparse.Namespace, key: str) -> Any:
    """One streamed upload. Returns the 202 body; raises SystemExit(2) on a problem answer,
    NotTheGateway on an answer the gateway does not give, aiohttp.ClientError when the
    connection broke."""
    query = urlencode(
        {
            "partner": args.partner,
            "destination": args.destination,
            "purpose": args.purpose,
            "legal_basis": args.legal_basis,
            "idempotency_key": key,
        }
    )
    progress = Progress(args.file.stat().st_size)
    endpoint = f"{args.url.rstrip('/')}/v1/provisions/customer-match"
    headers = {"Content-Type": _media(args.file) or "text/csv"}
    try:
        data = _chunks(args.file, progress)
        async with session.post(f"{endpoint}?{query}", data=data, headers=headers) as resp:
            progress.end()
            if resp.status != 202:
                await _refusal(resp, f"POST {endpoint}")
            return await _job(resp, f"POST {endpoint}")
    finally:
        progress.end()


async def _follow(session: aiohttp.ClientSession, base: str, job: Any) -> Any:
    """The job once its deliveries ended; on a terminal, how many people are delivered."""
    live = sys.stderr.isatty()
    while job["state"] in ("queued", "running"):
        if live:
            counts = job["counts"]
            print(f"\rdelivering: {counts['delivered']:,} of {counts['allowed']:,} people "
                  f"({counts['failed']:,} failed)", end="", file=sys.stderr)  # fmt: skip
        await asyncio.sleep(POLL_S)
        where = f"{base}/v1/jobs/{job['job_id']}"
        async with session.get(where) as resp:
            job = await _job(resp, f"GET {where}")
    if live:
        print(file=sys.stderr)
    return job


def _not_sent(base: str, job: Any) -> str | None:
    """Where to read why some records were not sent, if some were not."""
    counts = job["counts"]
    unsent = counts.get("denied", 0) + counts.get("invalid", 0)
    if not unsent:
        return None
    where = f"{base}/v1/jobs/{job['job_id']}/rejections"
    return f"{unsent:,} record(s) not sent, with the reasons: GET {where} (or ?format=csv)"


async def _main(args: argparse.Namespace) -> int:
    if not args.api_key:
        print("gateway upload: pass --api-key or set GATEWAY_API_KEY", file=sys.stderr)
        return 2
    if not args.file.is_file():
        print(f"gateway upload: {args.file}: no such file", file=sys.stderr)
        return 2
    if _media(args.file) is None:
        print(f"gateway upload: {args.file}: send JSON lines (.jsonl, one record a line) or "
              "CSV with a header row, not one JSON document", file=sys.stderr)  # fmt: skip
        return 2
    key = args.idempotency_key or file_digest(args.file)
    try:
        return await _upload(args, key, headers={"Authorization": f"Bearer {args.api_key}"})
    except NotTheGateway as exc:
        print(f"gateway upload: {exc}", file=sys.stderr)
        return 2


async def _upload(args: argparse.Namespace, key: str, *, headers: dict[str, str]) -> int:
    """Send the file (resending after a broken connection), follow the job, report it.
    Raises NotTheGateway, SystemExit(2) on a refusal."""
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        for attempt in range(args.retries + 1):
            try:
                job = await _send(session, args, key)
                break
            except (aiohttp.ClientError, OSError) as exc:
                if attempt == args.retries:
                    print(f"gateway upload: {args.url}: {type(exc).__name__}: {exc}; gave up "
                          f"after {args.retries + 1} attempt(s)", file=sys.stderr)  # fmt: skip
                    return 2
                wait = min(2.0**attempt, 30.0)
                print(f"upload broke ({type(exc).__name__}); resending in {wait:.0f} s",
                      file=sys.stderr)  # fmt: skip
                await asyncio.sleep(wait)
        if not args.no_wait:
            job = await _follow(session, args.url.rstrip("/"), job)
    print(json.dumps({"job_id": job["job_id"], "state": job["state"], "counts": job["counts"]}))
    if hint := _not_sent(args.url.rstrip("/"), job):
        print(hint, file=sys.stderr)
    return 1 if job["state"] == "failed" else 0
