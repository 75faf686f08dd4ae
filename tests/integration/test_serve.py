"""`gateway serve` as a real process: starts with no configuration, creates its keys 0600,
refuses to start on a bad contract; `gateway clients create` prints only the key."""

from __future__ import annotations

import json
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.processes import REPO, gateway_env, run_gateway


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str, key: str | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=2) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _raw(base: str, request: bytes) -> bytes:
    """Send `request` as is (bytes no HTTP client would send) and read the answer."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer


class Serving:
    """`gateway serve` as a process on a free port, homed in a temporary folder."""

    def __init__(self, tmp_path: Path) -> None:
        port = _free_port()
        self.env = gateway_env(tmp_path)
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(100):
            try:
                if _get(self.base + "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        pytest.fail("gateway serve did not answer /healthz")

    def stop(self) -> str:
        """Stop the service; its log (stderr)."""
        if self.proc.returncode is None:
            self.proc.terminate()
        _, stderr = self.proc.communicate(timeout=10)
        return stderr.decode()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    service = Serving(tmp_path)
    try:
        yield service.base, service.env
    finally:
        service.stop()


def test_serve_starts_with_no_configuration(
    served: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    base, env = served
    assert _get(base + "/healthz") == (200, b'{"status":"ok"}')
    key_files = sorted((tmp_path / "keys").glob("*.key"))
    assert [p.name.split(".")[0] for p in key_files] == [
        "log-signing",
        "pseudonymization",
        "secrets",
    ]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in key_files)
    assert (tmp_path / "var" / "gateway.sqlite3").exists()

    created = run_gateway("clients", "create", "--name", "ops", "--role", "compliance", env=env)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert created.stdout == key + "\n"  # the key is the only output
    assert _get(base + "/v1/partners", key)[0] == 200
    assert _get(base + "/v1/partners", key + "x")[0] == 401


def test_malformed_requests_leave_no_header_in_the_log_and_every_line_is_json(
    tmp_path: Path,
) -> None:
    service = Serving(tmp_path)
    try:
        created = run_gateway(
            "clients", "create", "--name", "c", "--role", "compliance", env=service.env
        )
        key = created.stdout.strip()
        # A control byte in a header: aiohttp refuses the request before any handler runs, and
        # its exception message quotes the header line, key and all.
        head = f"GET /v1/transfers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\x01\r\n"
        assert (
            _raw(service.base, head.encode() + b"\r\n")
            .split(b"\r\n")[0]
            .endswith(b" 400 Bad Request")
        )
        # Bytes that are not UTF-8 in the key: an invalid key (401), not a server error.
        head = "GET /v1/transfers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        answer = _raw(service.base, head.encode() + b"Authorization: Bearer gw_\xff\xfe\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b"application/problem+json" in answer
    finally:
        log = service.stop()
    assert key[10:] not in log
    events = [json.loads(line) for line in log.splitlines()]  # every line is JSON
    bad = [e for e in events if e["event"] == "bad_http_request"]
    assert [(e["status"], e["level"]) for e in bad] == [(400, "warning")]
    assert not [e for e in events if e["level"] == "error"]


def _problem(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"\r\nContent-Type: application/problem+json" in head, answer[:300]
    problem = json.loads(body)
    assert int(head.split(b" ")[1]) == problem["status"]
    return int(problem["status"]), problem


@pytest.mark.parametrize(
    ("request_bytes", "detail"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: dana@example.com\r\n\r\n", "valid HTTP/1.1"),
        (b"GET /v1/partners HTTP/1.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n", "longer than"),
        (b"DANA@EXAMPLE.COM / HTTP/1.1\r\n\r\n", "method"),
        (b"POST /v1/fraud-checks HTTP/1.1\r\nHost: x\r\nContent-Length: a@b\r\n\r\n", "valid"),
    ],
)
def test_a_request_that_is_not_http_is_a_problem_that_quotes_nothing(
    served: tuple[str, dict[str, str]], request_bytes: bytes, detail: str
) -> None:
    # aiohttp refuses these before any middleware runs, and its own answer is text/plain
    # quoting the offending line (an email here, a key in another header).
    status, problem = _problem(_raw(served[0], request_bytes))
    assert status == 400
    assert problem["type"] == "tag:gateway.example.com,2026:problems/malformed-http"
    assert detail in str(problem["detail"])
    assert "instance" not in problem
    shown = f"{problem['title']} {problem['detail']}".lower()
    assert "dana" not in shown
    assert "a@b" not in shown
    assert "aaaa" not in shown


def test_every_answer_is_uncacheable_and_names_no_software(
    served: tuple[str, dict[str, str]],
) -> None:
    # A 200, a problem from the middleware and a refusal aiohttp makes before any handler.
    ok = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    missing = b"GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    malformed = b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n"
    for request, status in ((ok, b"200"), (missing, b"404"), (malformed, b"400")):
        head = _raw(served[0], request).partition(b"\r\n\r\n")[0].lower().split(b"\r\n")
        assert head[0].split(b" ")[1] == status
        assert b"cache-control: no-store" in head
        assert b"x-content-type-options: nosniff" in head
        assert b"server: gateway" in head
        assert not [line for line in head if b"aiohttp" in line or b"python" in line]


def test_a_path_starting_with_two_slashes_gets_no_instance_naming_another_host(
    served: tuple[str, dict[str, str]],
) -> None:
    # As a URI reference "//evil.example/v1/jobs/x" names the host evil.example (RFC 3986
    # §4.2): the problem leaves `instance` out rather than point a client there.
    head = b"GET //evil.example/v1/jobs/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    status, problem = _problem(_raw(served[0], head))
    assert status == 404
    assert "instance" not in problem
    assert problem["detail"] == "there is no endpoint at //evil.example/v1/jobs/x"
    head = b"GET /v1//jobs HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert _problem(_raw(served[0], head))[1]["instance"] == "/v1//jobs"


def test_serve_stops_cleanly_on_sigterm_and_sigint(tmp_path: Path) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        service = Serving(tmp_path / signum.name)
        service.proc.send_signal(signum)
        log = service.stop()
        assert service.proc.returncode == 0, log
        assert "Traceback" not in log


def test_serve_refuses_a_bad_contract(tmp_path: Path) -> None:
    partners = tmp_path / "partners"
    partners.mkdir()
    text = (REPO / "partners" / "google-customer-match.toml").read_text()
    (partners / "google-customer-match.toml").write_text(text + "\nsurprise = 1\n")
    result = run_gateway("serve", "--port", str(_free_port()), env=gateway_env(tmp_path, partners))
    assert result.returncode != 0
    assert "google-customer-match.toml" in result.stderr
    assert "surprise" in result.stderr


def test_clients_create_rejects_a_sender_without_partners(tmp_path: Path) -> None:
    result = run_gateway(
        "clients", "create", "--name", "x", "--role", "sender", env=gateway_env(tmp_path)
    )
    assert result.returncode == 2
    assert result.stdout == ""


def test_clients_create_checks_partners_as_the_api_does(tmp_path: Path) -> None:
    result = run_gateway(
        "clients", "create", "--name", "x", "--role", "recipient",
        "--partner", "google-customer-match", env=gateway_env(tmp_path),
    )  # fmt: skip
    assert (result.returncode, result.stdout) == (2, "")
    assert "recipients are attribute_export" in result.stderr


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        ({"GATEWAY_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"}, [], "PostgreSQL"),
        ({"GATEWAY_LOG_LEVEL": "verbose"}, [], "GATEWAY_LOG_LEVEL='verbose': must be one of"),
        ({"GATEWAY_LOG_FORMAT": "xml"}, [], "GATEWAY_LOG_FORMAT='xml': must be one of"),
        ({}, ["--port", "99999"], "a port is 0 to 65535"),
    ],
)
def test_an_operators_mistake_is_one_line_and_exit_2(
    tmp_path: Path, env: dict[str, str], args: list[str], says: str
) -> None:
    done = run_gateway("serve", *args, env={**gateway_env(tmp_path), **env})
    assert done.returncode == 2
    assert says in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_says_which_address_it_cannot_listen_on(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_gateway("serve", "--port", str(port), env=gateway_env(tmp_path))
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_ledger_checkpoint_prints_only_the_note(tmp_path: Path) -> None:
    """Its output is the signed note (`> checkpoint.note`): logs go to stderr."""
    env = gateway_env(tmp_path)
    assert run_gateway("keys", "init", env=env).returncode == 0
    done = run_gateway("ledger", "checkpoint", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("gateway.example.com/transfer-log\n0\n")
