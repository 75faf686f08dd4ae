"""`gateway sandbox` as a real process: prints where it listens (the real port for --port 0),
answers, and stops cleanly with exit status 0 on Ctrl-C (SIGINT) and on SIGTERM."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from gateway.sandbox.examples import example_ingest_request
from tests.integration.processes import gateway_env

LISTENING = re.compile(r"sandbox listening on (http://127\.0\.0\.1:(\d+)/sandbox)")


def _post(url: str, body: object) -> tuple[int, object]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        return resp.status, json.loads(resp.read())


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_sandbox_command_serves_and_stops_cleanly(tmp_path: Path, stop: signal.Signals) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gateway", "sandbox", "--port", "0", "--seed", "4"],
        env=gateway_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        found = LISTENING.search(line)
        assert found, line
        base, port = found.group(1), int(found.group(2))
        assert port > 0
        status, body = _post(
            base + "/google-datamanager/v1/audienceMembers:ingest", example_ingest_request(2)
        )
        assert status == 200
        assert isinstance(body, dict)
        assert "requestId" in body
        proc.send_signal(stop)
        _, stderr = proc.communicate(timeout=15)
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sandbox_command_reports_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "sandbox", "--port", str(port)],
            env=gateway_env(tmp_path),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert done.returncode == 2
    assert "cannot listen" in done.stderr
