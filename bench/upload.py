"""A Customer Match upload end to end: `gateway upload` -> the service -> the sandbox.

    .venv/bin/python bench/upload.py [--records 1000000] [--database-url URL]

In one run, on this machine:

(a) floor: the same members, already normalized, hashed and encoded as Data Manager ingest
    requests of 10,000, POSTed straight to the sandbox (`gateway sandbox`, its own process):
    what delivery costs with no gateway at all. Records/s.
(b) gateway: `gateway upload FILE.csv` (its own process) streams the CSV to `gateway serve`
    (its own process, SQLite by default, sandbox off), which decides each record against the
    person's consent, normalizes and hashes email and phone, logs one entry per person,
    queues the requests, delivers them to the same sandbox and logs the outcomes. Records/s
    from the first byte sent until the job is done (every member acknowledged by the
    sandbox), and the service's peak resident memory (VmRSS, sampled every 50 ms; its log
    writer process counted in, as in its CPU time).

Targets (issue): >= 50,000 records/s; the service's memory < 300 MB throughout.
Every person has a consent (imported before the clock starts); a tenth has no phone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
PARTNER = "google-customer-match"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def env_for(home: Path, partners: Path, database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env.update(
        GATEWAY_HOME=str(home / "var"),
        GATEWAY_KEYS_DIR=str(home / "keys"),
        GATEWAY_PARTNERS_DIR=str(partners),
        GATEWAY_SANDBOX="off",
        GATEWAY_LOG_LEVEL="warning",
        GATEWAY_CHECKPOINT_EVERY="100000",
    )
    if database_url:
        env["GATEWAY_DATABASE_URL"] = database_url
    return env


def gateway(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway", *args], env=env, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return done.stdout.strip()


def start(args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", *args], env=env, stdout=subprocess.DEVNULL
    )


def wait_listening(port: int, limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def partners_at(sandbox_url: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for source in (REPO / "partners").glob("*.toml"):
        text = source.read_text(encoding="utf-8")
        (folder / source.name).write_text(
            text.replace("http://127.0.0.1:8080/sandbox", sandbox_url), encoding="utf-8"
        )
    return folder


def rows(count: int) -> Iterator[tuple[str, str, str]]:
    rnd = random.Random(5)
    for n in range(count):
        phone = "" if n % 10 == 0 else f"090{rnd.randrange(10**8):08d}"
        yield f"cust-{n:08d}", f"Person.{n}@Example.com", phone


def write_inputs(folder: Path, count: int) -> tuple[Path, Path]:
    members, consents = folder / "members.csv", folder / "consents.jsonl"
    with members.open("w") as m, consents.open("w") as c:
        m.write("subject_id,email,phone\n")
        for subject, email, phone in rows(count):
            m.write(f"{subject},{email},{phone}\n")
            c.write(
                f'{{"subject_id":"{subject}","purpose":"ad_customer_match","action":"grant",'
                '"notice_version":"pn-2026-04","channel":"web","obtained_at":'
                '"2026-04-01T00:00:00Z","foreign_disclosure_version":"us-google-2025-04"}\n'
            )
    return members, consents


def _children(pid: int) -> list[int]:
    """The live child processes of `pid` (the service's log writer, say)."""
    found: list[int] = []
    with contextlib.suppress(OSError):  # `pid` is gone
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _tree(pid: int) -> list[int]:
    return [pid, *_children(pid)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a live process and its live children have used so far."""
    total = 0.0
    for each in _tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Rss:
    """The peak VmRSS of a process and its children together, sampled on a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak_kb, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                own = _rss_kb(self.pid)
            except OSError:  # the service is gone
                return
            children = 0
            for child in _children(self.pid):
                with contextlib.suppress(OSError):  # it exited meanwhile
                    children += _rss_kb(child)
            self.peak_kb = max(self.peak_kb, own + children)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_kb


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def floor(sandbox_url: str, count: int) -> float:
    """Records/s POSTing ready ingest requests of 10,000 to the sandbox, 4 at a time."""
    from gateway.adapters.customer_match import Member, encode_ingest
    from gateway.contracts import load_contract
    from gateway.runtime import utc_now

    contract = load_contract(REPO / "partners" / f"{PARTNER}.toml", utc_now().date())
    destination = contract.destinations["default"]
    h = lambda text: hashlib.sha256(text.encode()).hexdigest()  # noqa: E731
    bodies = []
    batch: list[Member] = []
    for subject, email, phone in rows(count):
        batch.append(Member(subject, email=h(email.lower()), phone=h(phone) if phone else None))
        if len(batch) == 10_000:
            bodies.append(encode_ingest(destination, batch, (True, False)))
            batch = []
    if batch:
        bodies.append(encode_ingest(destination, batch, (True, False)))
    url = f"{sandbox_url}/google-datamanager/v1/audienceMembers:ingest"
    queue = list(enumerate(bodies))
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            while queue:
                n, body = queue.pop()
                headers = {"Content-Type": "application/json", "Idempotency-Key": f"floor-{n}"}
                async with session.post(url, data=body, headers=headers) as resp:
                    assert resp.status == 200, await resp.text()

        await asyncio.gather(*(worker() for _ in range(4)))
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--database-url", default="", help="PostgreSQL instead of SQLite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="upload-bench-") as tmp:
        home = Path(tmp)
        sandbox_port, port = free_port(), free_port()
        sandbox_url = f"http://127.0.0.1:{sandbox_port}/sandbox"
        env = env_for(home, partners_at(sandbox_url, home / "partners"), args.database_url)
        members, consents = write_inputs(home, args.records)
        sandbox = start(["sandbox", "--port", str(sandbox_port)], env)
        wait_listening(sandbox_port)
        floor_rate = asyncio.run(floor(sandbox_url, args.records))
        admin = gateway("clients", "create", "--name", "bench-admin", "--role", "admin", env=env)
        sender = gateway(
            "clients", "create", "--name", "bench", "--role", "sender", "--partner", PARTNER,
            env=env,
        )  # fmt: skip
        service = start(["serve", "--port", str(port)], env)
        try:
            wait_listening(port)
            imported = subprocess.run(
                ["curl", "-sf", "-X", "POST", "-H", f"Authorization: Bearer {admin}",
                 "-H", "Content-Type: application/x-ndjson", "--data-binary", f"@{consents}",
                 f"http://127.0.0.1:{port}/v1/consents/import"],
                capture_output=True, check=True,
            )  # fmt: skip
            assert imported.returncode == 0
            rss = Rss(service.pid)
            if os.environ.get("BENCH_PYSPY"):  # profile the service while it works
                extra = os.environ.get("BENCH_PYSPY_ARGS", "").split()  # --gil, say
                spy = subprocess.Popen(
                    [os.environ["BENCH_PYSPY"], "record", *extra, "-p", str(service.pid),
                     "-o", "/tmp/upload-profile.txt", "--format", "raw", "-r", "50"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            cpu_before = cpu_seconds(service.pid), cpu_seconds(sandbox.pid)
            children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            out = gateway(
                "upload", "--partner", PARTNER, "--url", f"http://127.0.0.1:{port}",
                "--api-key", sender, str(members), env=env,
            )  # fmt: skip
            elapsed = time.perf_counter() - started
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = {
                "serve": cpu_seconds(service.pid) - cpu_before[0],
                "sandbox": cpu_seconds(sandbox.pid) - cpu_before[1],
                "upload": (children.ru_utime + children.ru_stime)
                - (children_before.ru_utime + children_before.ru_stime),
            }
            peak_mb = rss.stop() / 1024
            if os.environ.get("BENCH_PYSPY"):
                spy.send_signal(2)
                spy.wait(30)
        finally:
            service.terminate()
            service.wait(30)
            sandbox.terminate()
            sandbox.wait(30)
    rate = args.records / elapsed
    backend = "PostgreSQL" if args.database_url else "SQLite"
    print(f"machine  {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, {backend}")
    print(f"records  {args.records:,} (job: {out})")
    print(f"(a) floor: ready requests straight to the sandbox  {floor_rate:>10,.0f} records/s")
    print(
        f"(b) gateway upload -> serve -> sandbox, done        {rate:>10,.0f} records/s  "
        f"{rate / floor_rate:.2f} x floor  (target 50,000)"
    )
    print(f"    service peak RSS {peak_mb:,.0f} MB (target < 300 MB)")
    spent = ", ".join(f"{name} {1e6 * s / args.records:.1f}" for name, s in cpu.items())
    print(f"    CPU µs per record (user + system): {spent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
