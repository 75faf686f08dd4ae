"""Benchmark: `POST /v1/consents/import` end to end, against the in-process import (the floor).

    .venv/bin/python bench/consent_import_http.py [--lines 1000000]

Starts `gateway serve` (SQLite, its own temporary home) as a separate process, streams a
synthetic JSONL file to it over loopback, and reads the server's peak resident memory from
/proc (VmHWM). In the same run it times `import_consents` in this process on the same file, so
the ratio is the cost of HTTP, authentication and the service around the import. Run it with
--lines 100000 and 1000000: a flat peak RSS shows memory does not grow with the file.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from consent_import import chunks, run_import, write_file

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(home: Path, port: int) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    env |= {
        "GATEWAY_HOME": str(home / "var"),
        "GATEWAY_KEYS_DIR": str(home / "keys"),
        "GATEWAY_PARTNERS_DIR": str(REPO / "partners"),
        "GATEWAY_LOG_LEVEL": "warning",
    }
    cmd = [sys.executable, "-m", "gateway", "serve", "--port", str(port)]
    return subprocess.Popen(cmd, env=env), env


async def wait_ready(base: str) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(200):
            try:
                async with http.get(base + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit("the server did not start")


async def post_file(base: str, key: str, path: Path) -> tuple[dict[str, object], float]:
    async def body() -> AsyncIterator[bytes]:
        async for chunk in chunks(path):
            yield chunk

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        started = time.perf_counter()
        async with http.post(
            base + "/v1/consents/import",
            data=body(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/x-ndjson"},
        ) as resp:
            result: dict[str, object] = await resp.json()
            assert resp.status == 200, result
        return result, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "consents.jsonl"
        write_file(path, args.lines)
        port = free_port()
        server, env = start_server(folder, port)
        try:
            base = f"http://127.0.0.1:{port}"
            asyncio.run(wait_ready(base))
            key = subprocess.run(
                [sys.executable, "-m", "gateway", "clients", "create", "--name", "bench",
                 "--role", "admin"],
                env=env, capture_output=True, text=True, check=True,
            ).stdout.strip()  # fmt: skip
            idle = peak_rss_mib(server.pid)
            result, http_s = asyncio.run(post_file(base, key, path))
            peak = peak_rss_mib(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
        floor_args = argparse.Namespace(backend="sqlite", database_url="", batch_size=5000)
        (folder / "floor").mkdir()
        _, floor_s = asyncio.run(run_import(floor_args, path, folder / "floor"))
    print(f"lines: {args.lines:,}  result: {result['granted']} granted, "
          f"{result['withdrawn']} withdrawn, {result['rejected']} rejected")  # fmt: skip
    for label, seconds in (
        ("HTTP import (gateway serve, SQLite)", http_s),
        ("in-process import_consents (floor)", floor_s),
    ):
        print(f"{label:<36} {seconds:6.2f} s  {args.lines / seconds:10,.0f} lines/s")
    print(f"ratio HTTP / floor throughput: {floor_s / http_s:.2f}")
    print(f"server peak RSS: {peak:.0f} MiB (after start: {idle:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
