"""RFC 9457 problem bodies: `instance` is a URI reference, and a name the caller made up (an
email pasted as a key) is never repeated in a JSON pointer (gateway/web/problems.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from pydantic import BaseModel, ConfigDict, ValidationError

from gateway.web.problems import problem_middleware, validation_problem

# RFC 3986 §2: what a URI reference may hold unencoded (unreserved, reserved, and "%").
_URI_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~:/?#[]@!$&'()*+,;=%"
)


async def _problem(path: str) -> dict[str, Any]:
    async def missing(request: web.Request) -> web.StreamResponse:
        raise web.HTTPNotFound()

    response = await problem_middleware(make_mocked_request("GET", path), missing)
    assert isinstance(response, web.Response)
    assert isinstance(response.text, str)
    body: dict[str, Any] = json.loads(response.text)
    return body


@pytest.mark.parametrize(
    ("path", "instance"),
    [
        ("/v1/nothing-here", "/v1/nothing-here"),
        ("/nope%20x/%E6%97%A5", "/nope%20x/%E6%97%A5"),
        ("/a b/日", "/a%20b/%E6%97%A5"),
        ('/a"b<c>', "/a%22b%3Cc%3E"),
        ("/v1/subjects/a%2Fb/consents", "/v1/subjects/a%2Fb/consents"),
        ("/v1/partners?x=1", "/v1/partners"),
    ],
)
async def test_instance_is_a_uri_reference(path: str, instance: str) -> None:
    """RFC 9457 §3.1.5: `instance` is a URI reference, so the path as sent (percent-encoded),
    not aiohttp's decoded `request.path` (spaces, non-ASCII, quotes)."""
    body = await _problem(path)
    assert body["instance"] == instance
    assert set(body["instance"]) <= _URI_CHARS


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    records: list[dict[str, str]] = []


def _pointers(raw: str) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as caught:
        _Body.model_validate_json(raw)
    return [(e.pointer, e.detail) for e in validation_problem(caught.value).errors]


def test_a_key_that_is_no_field_name_is_not_repeated() -> None:
    """An email or phone pasted as a key points at the object holding it, unnamed (the
    house rule of gateway.errors.name_like; RFC 9457 §5: problems must not leak)."""
    raw = json.dumps({"name": "n", "dana@example.com": 1, "records": [{"+81 90 1234 5678": 2}]})
    got = _pointers(raw)
    assert "dana" not in json.dumps(got)
    assert "1234" not in json.dumps(got)
    assert [pointer for pointer, _ in got] == ["/records/0", ""]
    assert all("not shown" in detail for _, detail in got)


def test_field_names_are_still_named() -> None:
    got = _pointers(json.dumps({"name": 1, "surprise_1": 1, "records": [{"email": 2}]}))
    assert got == [
        ("/name", "Input should be a valid string"),
        ("/records/0/email", "Input should be a valid string"),
        ("/surprise_1", "Extra inputs are not permitted"),
    ]
