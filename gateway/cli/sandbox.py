"""`gateway sandbox`: run the partner simulators alone.

Serves the simulated partner APIs (Google Data Manager, fraud scoring, point-program uploads)
at http://HOST:PORT/sandbox, the same paths `gateway serve` mounts, and prints that URL once
listening. Control endpoints (faults, counters, reset) are under /sandbox/_control/. Ctrl-C or
SIGTERM stops it cleanly, exit status 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import Any

from gateway.cli.args import port
from gateway.sandbox import SandboxState, run_sandbox


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "sandbox",
        help="run the local partner API simulators",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port, default=8090, help="port to bind (default 8090; 0: any free port)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of fault draws and partner-side ids (default 0)"
    )
    parser.add_argument(
        "--min-cell-count",
        type=int,
        default=10,
        help="cells the honest point-program recipient suppresses below this count (default 10)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    state = SandboxState(seed=args.seed, min_cell_count=args.min_cell_count)
    try:
        asyncio.run(_serve(args.host, args.port, state))
    except KeyboardInterrupt:  # asyncio.run has already stopped the server cleanly
        pass
    except OSError as exc:
        print(f"gateway sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    return 0


async def _serve(host: str, port: int, state: SandboxState) -> None:
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM stops it like Ctrl-C does: cancel the serving task, which cleans up.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await run_sandbox(host, port, state, on_ready=_announce)


def _announce(url: str) -> None:
    print(f"sandbox listening on {url}", flush=True)
