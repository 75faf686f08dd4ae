"""`gateway upload` and `gateway outbox replay` as real processes: what they refuse and say."""

from __future__ import annotations

import socket
from pathlib import Path

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
