"""The problem bodies for requests aiohttp refuses before any handler (gateway.web.server)."""

from __future__ import annotations

from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from gateway.errors import problem_type
from gateway.web.server import refusal_problem


def test_a_parse_error_names_its_kind_and_never_the_bytes() -> None:
    long_line = LineTooLong(b"dana@example.com" * 600, 8190)
    body = refusal_problem(400, long_line)
    assert body["type"] == problem_type("malformed-http")
    assert (body["status"], body["title"]) == (400, "Bad Request")
    assert body["detail"] == "a request line or header line is longer than this server reads"
    other = refusal_problem(400, BadHttpMessage("Invalid header token: b'dana@example.com'"))
    assert other["detail"] == "the request is not valid HTTP/1.1"
    assert "dana" not in str(body) + str(other)


def test_a_timeout_and_a_failure_outside_the_middlewares() -> None:
    timeout = refusal_problem(504, None)
    assert (timeout["type"], timeout["status"]) == (problem_type("timeout"), 504)
    failure = refusal_problem(500, RuntimeError("boom at /v1/subjects/dana@example.com"))
    assert (failure["type"], failure["status"]) == (problem_type("internal-error"), 500)
    assert "boom" not in str(failure)
