"""Benchmark: what a fraud check through the gateway adds over calling the provider directly.

    .venv/bin/python bench/fraud_check.py [--requests 6000] [--concurrency 10] [--rounds 3]
                                          [--rates 50,150] [--database-url URL]

Starts, each as its own process on loopback: the sandbox fraud provider (`gateway sandbox`),
a bare aiohttp forwarding proxy (this file with --proxy-for: reads the body, POSTs it to the
provider over a keep-alive pool, returns the answer) and the gateway (`gateway serve`, SQLite
store under a throw-away GATEWAY_HOME or the PostgreSQL database `--database-url` names,
contracts pointing at the sandbox, GATEWAY_SANDBOX=off, a fraud client minted with `gateway
clients create`). Then drives each with `--concurrency`
keep-alive clients, first in a closed loop (each client sends its next request as soon as
its answer is in: the most each target can do), then paced at each of `--rates` requests a
second in all (a checkout's traffic: latency below saturation):

    direct    POST {sandbox}/fraud/v1/scores        the provider's own wire format
    proxy     POST {proxy}/fraud/v1/scores          the same bytes, forwarded
    gateway   POST {gateway}/v1/fraud-checks        decide, hash, call, log provision + receipt

The three alternate in `--rounds` rounds (so drift on a noisy machine hits all of them) and
the figures are over every round. Printed per load: p50 / p99 latency and throughput of each,
the gateway's added p50 and p99 over direct (target: p99 <= 5 ms) and, in the closed loop, its
throughput over the bare proxy's (target >= 0.5x). Also per target: the CPU time (user +
system, all threads, from /proc) its answering process and that process's children (the
gateway's log writer) used per request (direct: the sandbox's), and in the closed loop the
gateway's over the proxy's: a steadier figure than throughput on a shared machine, since it
does not move with what else runs. Every process shares the machine's cores, so a closed
loop on a small machine measures CPU contention as much as the gateway. No assertions:
figures only.

BENCH_LOG_WRITER=thread runs the gateway with GATEWAY_LOG_WRITER=thread (default: process,
as `gateway serve` runs), for an A/B of where the log's appends run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
from aiohttp import web

from gateway.identifiers import Hashed, normalize_and_hash

sys.path.insert(0, str(Path(__file__).parent))
from upload import cpu_seconds  # bench/upload.py: /proc user + system time

REPO = Path(__file__).resolve().parents[1]
PARTNER = "sample-fraud-provider"
SAMPLE_URL = "http://127.0.0.1:8080/sandbox"
EMAIL = "bench.person@example.com"
Body = Callable[[int], tuple[bytes, dict[str, str]]]


# --- the bare proxy (its own process)


def serve_proxy(target: str, port: int) -> None:
    """Forward every POST body to `target` + path and return the answer, nothing else."""

    async def start() -> web.AppRunner:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))

        async def forward(request: web.Request) -> web.Response:
            body = await request.read()
            headers = {"Content-Type": "application/json"}
            if key := request.headers.get("Idempotency-Key"):
                headers["Idempotency-Key"] = key
            url = target + "/" + request.match_info["tail"]
            async with session.post(url, data=body, headers=headers) as answer:
                payload = await answer.read()
                return web.Response(
                    status=answer.status, body=payload, content_type="application/json"
                )

        app = web.Application()
        app.router.add_post("/{tail:.*}", forward)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        print(f"proxy listening on http://127.0.0.1:{port}", flush=True)
        return runner

    loop = asyncio.new_event_loop()
    loop.run_until_complete(start())
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    with contextlib.suppress(KeyboardInterrupt):
        loop.run_forever()


# --- the processes under test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def process(
    args: list[str], env: dict[str, str], log: Path, ready: str = ""
) -> Iterator[tuple[str, int]]:
    """Run `args` (output to `log`) until the block ends; yields the first output line holding
    `ready` (at once with "" when `ready` is empty: the caller checks readiness itself) and
    the process id."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield (wait_line(proc, log, ready) if ready else ""), proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_line(proc: subprocess.Popen[bytes], log: Path, ready: str, limit_s: float = 30) -> str:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
            if ready in line:
                return line.strip()
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"{' '.join(map(str, proc.args))} not ready; see {log}")


def gateway_env(home: Path, sandbox_url: str, database_url: str = "") -> dict[str, str]:
    partners = home / "partners"
    partners.mkdir()
    for source in (REPO / "partners").glob("*.toml"):
        text = source.read_text(encoding="utf-8").replace(SAMPLE_URL, sandbox_url)
        (partners / source.name).write_text(text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_HOME=str(home / "var"),
        GATEWAY_KEYS_DIR=str(home / "keys"),
        GATEWAY_PARTNERS_DIR=str(partners),
        GATEWAY_SANDBOX="off",
        GATEWAY_LOG_LEVEL="info",  # as deployed: one access-log line per request
        # process (the default) or thread: where the SQLite store appends to the log
        GATEWAY_LOG_WRITER=os.environ.get("BENCH_LOG_WRITER", "process"),
    )
    if database_url:  # PostgreSQL instead of SQLite
        env["GATEWAY_DATABASE_URL"] = database_url
    return env


def mint_fraud_key(env: dict[str, str]) -> str:
    args = ["clients", "create", "--name", "bench", "--role", "fraud"]
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


async def wait_ready(url: str, limit_s: float = 30) -> None:
    async with aiohttp.ClientSession() as session:
        deadline = time.monotonic() + limit_s
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} never answered")
            await asyncio.sleep(0.1)


# --- load


def hashed_email() -> str:
    result = normalize_and_hash("email", EMAIL)
    assert isinstance(result, Hashed)
    assert result.sha256 is not None
    return result.sha256


def provider_body(tag: str) -> Body:
    """The provider's wire format, with the email already hashed (what the gateway sends)."""
    email = hashed_email()

    def make(i: int) -> tuple[bytes, dict[str, str]]:
        check_id = f"{tag}-{i}"
        order = {"order_id": f"o-{i}", "amount": 12800, "currency": "JPY", "email": email}
        body = json.dumps({"check_id": check_id, "order": order}).encode()
        return body, {"Content-Type": "application/json", "Idempotency-Key": check_id}

    return make


def gateway_body(key: str) -> Body:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def make(i: int) -> tuple[bytes, dict[str, str]]:
        order = {"order_id": f"o-{i}", "amount": 12800, "currency": "JPY", "email": EMAIL}
        body = {"partner": PARTNER, "subject_id": f"cust-{i % 1000}", "order": order}
        return json.dumps(body).encode(), headers

    return make


class Target(NamedTuple):
    url: str
    make: Body
    pid: int  # the process that answers (direct: the sandbox), whose CPU time is counted


@dataclass
class Figures:
    latencies: list[float] = field(default_factory=list)  # seconds
    seconds: float = 0.0
    fallbacks: int = 0
    cpu_s: float = 0.0  # CPU time the answering process used while driven

    def add(self, other: Figures) -> None:
        self.latencies += other.latencies
        self.seconds += other.seconds
        self.fallbacks += other.fallbacks
        self.cpu_s += other.cpu_s

    @property
    def cpu_us(self) -> float:
        """The answering process's CPU per request, µs."""
        return 1e6 * self.cpu_s / len(self.latencies) if self.latencies else 0.0

    def pct(self, p: int) -> float:
        return statistics.quantiles(self.latencies, n=100)[p - 1] * 1000

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


async def drive(
    target: Target, start: int, count: int, concurrency: int, rate: float | None = None
) -> Figures:
    """`count` POSTs numbered from `start` by `concurrency` keep-alive clients: back to back
    (rate None: a closed loop, as fast as the target answers), or paced at `rate` requests a
    second in all. Paced latency counts from when a request was due, not when a free client
    sent it, so a target that falls behind is charged for the wait (no coordinated omission)."""
    figures = Figures()
    url, make, pid = target
    cursor = iter(range(count))

    async def worker(session: aiohttp.ClientSession, began: float) -> None:
        for n in cursor:
            due = began + n / rate if rate else time.perf_counter()
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            body, headers = make(start + n)
            async with session.post(url, data=body, headers=headers) as resp:
                answer: dict[str, Any] = await resp.json()
            figures.latencies.append(time.perf_counter() - due)
            if resp.status != 200:
                raise RuntimeError(f"{url}: HTTP {resp.status}: {answer}")
            figures.fallbacks += bool(answer.get("fallback"))

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        began, cpu = time.perf_counter(), cpu_seconds(pid)
        await asyncio.gather(*(worker(session, began) for _ in range(concurrency)))
        figures.seconds = time.perf_counter() - began
        figures.cpu_s = cpu_seconds(pid) - cpu
    return figures


@contextlib.asynccontextmanager
async def targets(home: Path, database_url: str = "") -> AsyncIterator[dict[str, Target]]:
    python = sys.executable
    sandbox_args = [python, "-m", "gateway", "sandbox", "--port", "0"]
    sandbox_log = home / "sandbox.log"
    with process(sandbox_args, dict(os.environ), sandbox_log, "listening on") as (line, spid):
        sandbox = line.rsplit(" ", 1)[1]
        env = gateway_env(home, sandbox, database_url)
        key = mint_fraud_key(env)
        port = free_port()
        proxy_args = [python, __file__, "--proxy-for", sandbox, "--port", str(free_port())]
        serve_args = [python, "-m", "gateway", "serve", "--port", str(port)]
        proxy_log = home / "proxy.log"
        with (
            process(proxy_args, dict(os.environ), proxy_log, "proxy listening") as (pline, ppid),
            process(serve_args, env, home / "gateway.log") as (_, gpid),
        ):
            gateway = f"http://127.0.0.1:{port}"
            await wait_ready(gateway + "/healthz")
            proxy = pline.rsplit(" ", 1)[1]
            yield {
                "direct": Target(sandbox + "/fraud/v1/scores", provider_body("direct"), spid),
                "proxy": Target(proxy + "/fraud/v1/scores", provider_body("proxy"), ppid),
                "gateway": Target(gateway + "/v1/fraud-checks", gateway_body(key), gpid),
            }


Runs = dict[str, dict[str, Figures]]  # load -> target -> figures


async def bench(args: argparse.Namespace) -> Runs:
    loads: list[float | None] = [None, *args.rates]
    runs: Runs = {_load(r): {n: Figures() for n in ("direct", "proxy", "gateway")} for r in loads}
    per_round = max(args.requests // args.rounds, args.concurrency)
    with tempfile.TemporaryDirectory(prefix="bench-fraud-") as tmp:
        async with targets(Path(tmp), args.database_url) as urls:
            for target in urls.values():  # warm up: connections, caches, first appends
                await drive(target, 10**7, 300, args.concurrency)
            first = 0
            for _ in range(args.rounds):
                for rate in loads:
                    for name, target in urls.items():
                        done = await drive(target, first, per_round, args.concurrency, rate)
                        runs[_load(rate)][name].add(done)
                    first += per_round
    return runs


def _load(rate: float | None) -> str:
    return "closed loop (saturating)" if rate is None else f"paced at {rate:g} req/s"


def report(runs: Runs, concurrency: int, backend: str) -> None:
    print(f"fraud check: {concurrency} concurrent keep-alive clients, loopback, {backend} store")
    for load, totals in runs.items():
        print(f"\n{load}")
        head = f"{'target':<8} {'requests':>8} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}"
        print(f"  {head} {'CPU µs/req':>10}")
        for name, f in totals.items():
            p50, p99, n = f.pct(50), f.pct(99), len(f.latencies)
            row = f"{name:<8} {n:>8} {p50:>8.2f} {p99:>8.2f} {f.rate:>8.0f}"
            print(f"  {row} {f.cpu_us:>10.0f}")
        direct, proxy, gateway = totals["direct"], totals["proxy"], totals["gateway"]
        added = gateway.pct(99) - direct.pct(99)
        print(f"  gateway added p99 over direct: {added:6.2f} ms (target <= 5 ms)")
        print(f"  gateway added p50 over direct: {gateway.pct(50) - direct.pct(50):6.2f} ms")
        print(f"  bare proxy added p99 over direct: {proxy.pct(99) - direct.pct(99):6.2f} ms")
        if "closed" in load:
            ratio = gateway.rate / proxy.rate if proxy.rate else 0.0
            print(f"  gateway throughput / bare proxy: {ratio:.2f}x (target >= 0.5x)")
            cost = gateway.cpu_us / proxy.cpu_us if proxy.cpu_us else 0.0
            print(f"  gateway CPU per request / bare proxy's: {cost:.2f}x")
        print(f"  gateway fallbacks: {gateway.fallbacks} (expected 0)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6000, help="per target, all rounds")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--rates",
        type=lambda text: [float(r) for r in text.split(",") if r],
        default=[50.0, 150.0],
        help="paced loads to measure besides the closed loop, req/s, comma-separated",
    )
    parser.add_argument(
        "--database-url",
        default="",
        help="PostgreSQL instead of SQLite (an empty database: the gateway migrates it)",
    )
    parser.add_argument("--proxy-for", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.proxy_for:
        serve_proxy(args.proxy_for, args.port)
        return 0
    backend = "PostgreSQL" if args.database_url else "SQLite"
    report(asyncio.run(bench(args)), args.concurrency, backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
