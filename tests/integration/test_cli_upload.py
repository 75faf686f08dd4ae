"""`gateway upload` and `gateway outbox replay` as real processes: what they refuse and say."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from gateway.sandbox import SandboxState, sandbox_server
from tests.integration.processes import gateway_env, run_gateway


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port  # nothing listens once the socket is closed


def test_upload_refuses_a_json_document_before_sending(tmp_path: Path) -> None:
    members = tmp_path / "members.json"
    members.write_text('[{"subject_id": "m-1", "email": "a@example.com"}]')
    done = run_gateway(
        "upload", "--partner", "google-customer-match", "--api-key", "k",
        "--url", f"http://127.0.0.1:{_closed_port()}", str(members), env=gateway_env(tmp_path),
    )  # fmt: skip
    assert (done.returncode, done.stdout) == (2, "")
    assert "JSON lines" in done.stderr
    assert "a@example.com" not in done.stderr


def test_upload_names_the_service_it_could_not_reach(tmp_path: Path) -> None:
    members = tmp_path / "members.csv"
    members.write_text("subject_id,email\nm-1,a@example.com\n")
    url = f"http://127.0.0.1:{_closed_port()}"
    done = run_gateway(
        "upload", "--partner", "google-customer-match", "--api-key", "k", "--url", url,
        "--retries", "0", str(members), env=gateway_env(tmp_path),
    )  # fmt: skip
    assert done.returncode == 2
    assert url in done.stderr
    assert "gave up after 1 attempt(s)" in done.stderr


def test_replaying_an_id_that_is_no_dead_letter_fails(tmp_path: Path) -> None:
    done = run_gateway("outbox", "replay", "not-a-delivery", env=gateway_env(tmp_path))
    assert done.returncode == 1
    assert "0 dead letter(s) back to pending" in done.stdout
    assert "1 id(s) were not dead letters" in done.stderr


# something that is not the gateway answers: one line naming the URL and the status, exit 2


async def _upload(url: str, tmp_path: Path) -> tuple[int, str, str]:
    """`gateway upload` of a one-person CSV to `url`, as a process run from the event loop
    (which serves `url` meanwhile)."""
    members = tmp_path / "members.csv"
    members.write_text("subject_id,email\nm-1,taro.yamada@example.jp\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "upload", "--partner", "google-customer-match",
        "--api-key", "k", "--url", url, "--retries", "0", str(members),
        env=gateway_env(tmp_path), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def _assert_one_line(done: tuple[int, str, str], says: str) -> None:
    code, out, err = done
    assert (code, out) == (2, ""), err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert err.startswith("gateway upload: ")
    assert says in err
    assert "taro" not in err


async def test_the_sandbox_is_not_the_gateway(tmp_path: Path) -> None:
    """QA's repro: --url pointed at the partner simulators (text 404 at its root, a JSON error
    that is no problem document under /sandbox)."""
    async with sandbox_server(SandboxState(seed=0)) as sandbox:
        root = sandbox.removesuffix("/sandbox")
        _assert_one_line(
            await _upload(root, tmp_path),
            f"POST {root}/v1/provisions/customer-match answered HTTP 404 (text/plain), not a "
            "problem document: is --url the gateway?",
        )
        _assert_one_line(
            await _upload(sandbox, tmp_path),
            f"POST {sandbox}/v1/provisions/customer-match answered HTTP 404 (application/json)",
        )


Answer = tuple[int, str, str]  # status, body, media type


QUEUED = {"job_id": "j-1", "state": "queued", "counts": {"allowed": 1, "delivered": 0, "failed": 0}}
PROBLEM = {"type": "tag:x", "title": "Unauthorized", "status": 401, "detail": "unknown API key"}


@contextlib.asynccontextmanager
async def _serving(post: Answer, job: Answer | None = None) -> AsyncIterator[str]:
    """A stand-in that answers the upload with `post` and a poll of job j-1 with `job`."""

    def answer(status: int, body: str, media: str) -> web.Response:
        return web.Response(status=status, text=body, content_type=media)

    async def upload(request: web.Request) -> web.Response:
        await request.read()
        return answer(*post)

    async def poll(request: web.Request) -> web.Response:
        assert job is not None
        return answer(*job)

    app = web.Application()
    app.router.add_post("/v1/provisions/customer-match", upload)
    app.router.add_get("/v1/jobs/j-1", poll)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("post", "says"),
    [
        ((200, "<html>welcome</html>", "text/html"), "answered HTTP 200 (text/html)"),
        ((202, "{}", "application/json"), "answered HTTP 202 (application/json), not a job"),
        ((202, "", "application/json"), "answered HTTP 202 (application/json), not a job"),
        ((502, "bad gateway", "text/plain"), "answered HTTP 502 (text/plain), not a problem"),
    ],
    ids=["html", "no-job", "empty", "proxy-error"],
)
async def test_an_answer_the_gateway_never_gives_is_one_line(
    tmp_path: Path, post: Answer, says: str
) -> None:
    async with _serving(post) as url:
        done = await _upload(url, tmp_path)
    _assert_one_line(done, f"POST {url}/v1/provisions/customer-match {says}")


async def test_a_job_poll_the_gateway_never_answers_is_one_line(tmp_path: Path) -> None:
    post = (202, json.dumps(QUEUED), "application/json")
    async with _serving(post, (200, "<html/>", "text/html")) as url:
        done = await _upload(url, tmp_path)
    _assert_one_line(done, f"GET {url}/v1/jobs/j-1 answered HTTP 200 (text/html), not a job")


async def test_the_gateways_refusal_is_still_printed(tmp_path: Path) -> None:
    post = (401, json.dumps(PROBLEM), "application/problem+json")
    async with _serving(post) as url:
        code, out, err = await _upload(url, tmp_path)
    assert (code, out) == (2, "")
    assert json.loads(err) == PROBLEM
