"""Fraud checks while a large upload runs: does a checkout wait behind a partner export?

    .venv/bin/python bench/fraud_during_upload.py [--records 300000] [--rate 50]

One service (`gateway serve`, SQLite, its own process) and two sandboxes (`gateway sandbox`,
each its own process) on loopback: one receives the upload's Data Manager requests, the other
answers the fraud checks, as two partners would (in one process, the provider's answers would
wait behind the schema checks of 10,000-member requests). Fraud checks are sent paced at
`--rate` requests a second by 10 keep-alive clients (latency counted from when a request was
due, as bench/fraud_check.py does), in two phases of the same run:

(a) alone: the service does nothing else, for as many checks as --rate gives in 20 s;
(b) during: `gateway upload` streams a `--records` CSV into the same service, and the checks
    go on until the upload's job is done (every member delivered to the sandbox).

Printed: p50 / p90 / p99 / max latency and fallbacks of each phase, p99 during over p99 alone,
and the upload's rate. A check whose wait reaches the contract's budget (800 ms) falls back
to `review`: a checkout that an export made worse. `--provider-latency-ms` makes the provider
hold every check (a slow partner): checks are then under way nearly all the time, and the
upload's rate shows what giving way to them costs at worst. No assertions: figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from fraud_check import Figures, Target, drive, gateway_body  # bench/fraud_check.py
from upload import (  # bench/upload.py
    PARTNER,
    env_for,
    free_port,
    gateway,
    partners_at,
    start,
    wait_listening,
    write_inputs,
)

FRAUD_PARTNER = "sample-fraud-provider"
CONCURRENCY = 10


async def during(target: Target, upload: asyncio.subprocess.Process, rate: float) -> Figures:
    """Checks paced at `rate`, in slices of one second, until `upload` has exited."""
    figures = Figures()
    first = 10**6
    while upload.returncode is None:
        step = max(int(rate), CONCURRENCY)
        figures.add(await drive(target, first, step, CONCURRENCY, rate))
        first += step
    return figures


async def measure(
    target: Target, upload_args: list[str], env: dict[str, str], rate: float
) -> tuple[Figures, Figures, float, str]:
    """Checks alone, then during the upload: figures of each, the upload's seconds and
    what it printed."""
    await drive(target, 10**7, 300, CONCURRENCY)  # warm up
    alone = await drive(target, 0, int(20 * rate), CONCURRENCY, rate)
    started = time.perf_counter()
    upload = await asyncio.create_subprocess_exec(
        *upload_args, env=env, stdout=asyncio.subprocess.PIPE
    )
    waiting = asyncio.ensure_future(upload.communicate())
    mixed = await during(target, upload, rate)
    out, _ = await waiting
    if upload.returncode:
        raise RuntimeError(f"gateway upload exited {upload.returncode}")
    return alone, mixed, time.perf_counter() - started, out.decode().strip()


def line(name: str, f: Figures) -> str:
    cuts = statistics.quantiles(f.latencies, n=100)
    p50, p90, p99 = (1000 * cuts[p - 1] for p in (50, 90, 99))
    top = 1000 * max(f.latencies)
    return (
        f"  {name:<7} {len(f.latencies):>7} {p50:>8.2f} {p90:>8.2f} {p99:>8.2f} {top:>8.2f} "
        f"{f.fallbacks:>9}"
    )


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="mixed-bench-") as tmp:
        home = Path(tmp)
        sandbox_port, provider_port, port = free_port(), free_port(), free_port()
        sandbox_url = f"http://127.0.0.1:{sandbox_port}/sandbox"
        partners = partners_at(sandbox_url, home / "partners")
        fraud_contract = partners / f"{FRAUD_PARTNER}.toml"  # its own provider (module doc)
        fraud_contract.write_text(
            fraud_contract.read_text().replace(
                sandbox_url, f"http://127.0.0.1:{provider_port}/sandbox"
            )
        )
        env = env_for(home, partners, "")
        members, consents = write_inputs(home, args.records)
        sender = gateway(
            "clients", "create", "--name", "bench", "--role", "sender", "--partner", PARTNER,
            env=env,
        )  # fmt: skip
        admin = gateway("clients", "create", "--name", "admin", "--role", "admin", env=env)
        fraud = gateway("clients", "create", "--name", "checks", "--role", "fraud", env=env)
        sandbox = start(["sandbox", "--port", str(sandbox_port)], env)
        provider = start(["sandbox", "--port", str(provider_port)], env)
        service = start(["serve", "--port", str(port)], env)
        try:
            wait_listening(sandbox_port)
            wait_listening(provider_port)
            wait_listening(port)
            url = f"http://127.0.0.1:{port}"
            subprocess.run(
                ["curl", "-sf", "-X", "POST", "-H", f"Authorization: Bearer {admin}",
                 "-H", "Content-Type: application/x-ndjson", "--data-binary", f"@{consents}",
                 f"{url}/v1/consents/import"],
                capture_output=True, check=True,
            )  # fmt: skip
            if args.provider_latency_ms:  # a slow provider: every check held that long
                plan = {"target": "fraud", "latency_ms": args.provider_latency_ms}
                subprocess.run(
                    ["curl", "-sf", "-X", "POST", "-H", "Content-Type: application/json",
                     "--data", json.dumps(plan),
                     f"http://127.0.0.1:{provider_port}/sandbox/_control/faults"],
                    capture_output=True, check=True,
                )  # fmt: skip
            target = Target(f"{url}/v1/fraud-checks", gateway_body(fraud), service.pid)
            upload = [sys.executable, "-m", "gateway", "upload", "--partner", PARTNER,
                      "--url", url, "--api-key", sender, str(members)]  # fmt: skip
            alone, mixed, elapsed, out = asyncio.run(measure(target, upload, env, args.rate))
        finally:
            for proc in (service, sandbox, provider):
                proc.terminate()
                proc.wait(30)
    print(f"fraud checks paced at {args.rate:g} req/s, {CONCURRENCY} clients, SQLite store")
    print(f"  {'phase':<7} {'checks':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'fallbacks':>9}")  # fmt: skip
    print(line("alone", alone))
    print(line("during", mixed))
    print(f"  p99 during the upload / p99 alone: {mixed.pct(99) / alone.pct(99):.1f}x")
    rate = args.records / elapsed
    print(f"upload of {args.records:,} records: {rate:,.0f} records/s ({out})")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=300_000)
    parser.add_argument("--rate", type=float, default=50.0, help="fraud checks a second")
    parser.add_argument(
        "--provider-latency-ms",
        type=float,
        default=0.0,
        help="the provider holds every check this long (sandbox fault plan): a slow provider",
    )
    run(parser.parse_args())
    return 0


if __name__ == "__main__":
    sys.exit(main())
