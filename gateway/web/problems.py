"""Errors to RFC 9457 problem details, in one middleware; and strict JSON body reading.

Every error a caller sees is `application/problem+json` with a stable `type`. Nothing about an
unexpected failure leaks: the traceback goes to the server log, the caller gets a request id.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import structlog
from aiohttp import web
from pydantic import BaseModel, ValidationError

from gateway.errors import (
    PROBLEM_MEDIA_TYPE,
    BadRequest,
    FieldError,
    NotFound,
    PayloadTooLarge,
    ProblemError,
    UnsupportedMediaType,
    ValidationFailed,
    internal_problem,
    name_like,
    problem_type,
)

log = structlog.get_logger("gateway.web")
M = TypeVar("M", bound=BaseModel)
_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# Set on every answer (`harden`): personal data is never kept by a cache on the way, a browser
# never guesses a media type, and the server names no software or version for a scanner.
ANSWER_HEADERS: Final = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
SERVER: Final = "gateway"


def harden(response: web.StreamResponse) -> None:
    """ANSWER_HEADERS on `response` (a Cache-Control the handler chose is kept), and a Server
    header that replaces aiohttp's "Python/3.x aiohttp/3.y.z"."""
    headers = response.headers
    for name, value in ANSWER_HEADERS.items():
        headers.setdefault(name, value)
    headers["Server"] = SERVER


async def harden_answer(_request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare` signal: `harden` (it runs after aiohttp has set its headers and
    before they are written)."""
    harden(response)


def problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=int(body["status"]),
        text=json.dumps(body, ensure_ascii=False),
        content_type=PROBLEM_MEDIA_TYPE,
        headers=headers,
    )


def instance_of(request: web.Request) -> str | None:
    """The problem's `instance` for `request`: its path percent-encoded as sent (RFC 9457
    §3.1.5: a URI reference), not aiohttp's decoded `request.path` (a space, a quote, "%2F",
    non-ASCII make no URI). None (no `instance`) for a path that starts with "//": as a
    reference that is a network-path, naming the host after the slashes
    (`//evil.example/x` resolves to http://evil.example/x, RFC 3986 §4.2)."""
    path = request.rel_url.raw_path
    return None if path.startswith("//") else path


def _from_http_exception(
    exc: web.HTTPException, method: str, path: str, instance: str | None, allowed: str | None
) -> dict[str, Any]:
    """aiohttp's own errors (no route, wrong method (`allowed`: its Allow header), body too
    large) as problem bodies."""
    mapped: dict[int, ProblemError] = {
        404: NotFound(f"there is no endpoint at {path}"),
        405: _MethodNotAllowed(
            f"this endpoint does not accept {method}"
            + (f"; it accepts {allowed}" if allowed else "")
        ),
        413: PayloadTooLarge("the request body is larger than this endpoint accepts"),
    }
    problem = mapped.get(exc.status)
    if problem is not None:
        return problem.body(instance)
    body: dict[str, Any] = {
        "type": problem_type("http-" + str(exc.status)),
        "title": exc.reason,
        "status": exc.status,
        "detail": exc.text or exc.reason,
    }
    if instance is not None:
        body["instance"] = instance
    return body


class _MethodNotAllowed(ProblemError):
    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"


def route_of(request: web.Request) -> str:
    """The request's route template (`/v1/subjects/{subject_id}/consents`), for logs: never
    the path, which carries subject ids (house rule 10: logs carry only subject keys)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(none)"


@web.middleware
async def access_log_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """One log line per request. It names the route template, never the path: paths carry
    subject ids, and logs carry only subject keys (house rule 10)."""
    started = time.perf_counter()
    status = CLIENT_CLOSED_REQUEST  # unless an answer comes: aiohttp cancels the handler
    try:  # of a caller that left (a download cancelled while it waits to write, say)
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:  # below 400: problem_middleware lets them through
        status = exc.status
        raise
    finally:
        log.info(
            "request",
            method=request.method,
            route=route_of(request),
            status=status,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )


@web.middleware
async def problem_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    instance = instance_of(request)
    try:
        return await handler(request)
    except ProblemError as exc:
        return problem_response(exc.body(instance), exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        allowed = exc.headers.get("Allow")
        body = _from_http_exception(
            exc, request.method, request.rel_url.raw_path, instance, allowed
        )
        return problem_response(body, None if allowed is None else {"Allow": allowed})
    except ConnectionResetError:
        if request.transport is not None and not request.transport.is_closing():
            log.exception("unhandled_error", method=request.method, route=route_of(request))
            return problem_response(internal_problem(instance))
        # The caller went away mid-answer (a long download cancelled, say): nobody to tell.
        log.info("client_disconnected", method=request.method)
        return web.Response(status=CLIENT_CLOSED_REQUEST)
    except Exception:
        log.exception("unhandled_error", method=request.method, route=route_of(request))
        return problem_response(internal_problem(instance))


def pointer(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a JSON pointer (RFC 6901)."""
    parts = (str(p).replace("~", "~0").replace("/", "~1") for p in loc)
    return "/" + "/".join(parts) if loc else ""


def validation_problem(exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> ProblemError:
    """A pydantic ValidationError as a 422 naming every field (or 400 for broken JSON)."""
    errors = exc.errors(include_url=False, include_input=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return BadRequest("the body is not valid JSON: " + errors[0]["msg"])
    # By pointer (a union's members fail at one place), and whether a key was left out of it.
    details: dict[tuple[str, bool], list[str]] = {}
    for e in errors:
        loc = tuple(part for part in e["loc"] if not _is_union_tag(part))
        shown = _shown_location(loc)  # an unknown key or a dict's key: the caller's own text
        where = (pointer(prefix + shown), len(shown) < len(loc))
        details.setdefault(where, []).append(_message(e["msg"]))
    fields = [
        FieldError(where, _UNSHOWN * unshown + "; or ".join(dict.fromkeys(msgs)))
        for (where, unshown), msgs in details.items()
    ]
    named = ", ".join(f.pointer or "/" for f in fields[:5])
    if len(fields) > 5:
        named += f" and {len(fields) - 5} more (see errors)"
    return ValidationFailed(f"{len(fields)} invalid field(s): {named}", errors=fields)


# Pydantic names the member of a union that failed in the error's location ("str",
# "list[function-after[...]]", "literal['all']"): no field of the body, so not in a pointer.
_UNION_TAG: Final = re.compile(r"^(str|int|float|bool|bytes|none|list|dict|decimal)$|[\[(]")


_UNSHOWN: Final = "a member not shown (its name is not a field name): "


def _shown_location(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """`loc` up to the first key that is not shaped like this API's field names: such a key
    is one the caller sent (an email pasted as a key, say) and is not repeated (house rule
    of gateway.errors.name_like; RFC 9457 §5: a problem must not leak what it need not)."""
    for position, part in enumerate(loc):
        if isinstance(part, str) and not name_like(part):
            return loc[:position]
    return loc


def _is_union_tag(part: int | str) -> bool:
    return isinstance(part, str) and _UNION_TAG.search(part) is not None


def _message(msg: str) -> str:
    """Pydantic's message for a field, without the "Value error, " its custom validators'
    messages carry."""
    return msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")


def require_media(request: web.Request, accepted: tuple[str, ...]) -> str:
    """The request's media type if accepted, in UTF-8 (require_utf8). Raises
    UnsupportedMediaType."""
    media = request.content_type
    if media not in accepted:
        raise UnsupportedMediaType(
            f"send the body as {' or '.join(accepted)}, not {media or 'no Content-Type'}"
        )
    require_utf8(request)
    return media


def require_utf8(request: web.Request) -> None:
    """Every body this API reads is UTF-8 (JSON per RFC 8259 8.1; the streamed JSONL and CSV
    readers decode UTF-8): a Content-Type naming another charset is refused whole, rather than
    each line being rejected as "not valid UTF-8". Raises UnsupportedMediaType."""
    charset = request.charset
    if charset is not None and charset.strip().lower() not in _UTF8:
        raise UnsupportedMediaType(
            "the body must be UTF-8 (charset=utf-8, or no charset): convert a Shift_JIS or "
            "other file to UTF-8 first; a recipient's own encoding is applied by the gateway"
        )


# What the access log records for an answer cut off by its caller (nginx's convention): the
# response never reaches anyone.
CLIENT_CLOSED_REQUEST: Final = 499
_UTF8: Final = frozenset({"utf-8", "utf8"})  # the IANA name and its common alias


async def read_model(request: web.Request, model: type[M]) -> M:
    """Read and validate a JSON body. Raises BadRequest, ValidationFailed, PayloadTooLarge,
    UnsupportedMediaType."""
    require_media(request, ("application/json",))
    raw = await request.read()  # bounded by the app's client_max_size (413 past it)
    if not raw.strip():
        raise BadRequest("the request body is empty; a JSON object is required")
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        raise validation_problem(exc) from exc


def json_response(payload: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(payload, ensure_ascii=False, default=str),
        content_type="application/json",
    )


def model_response(
    model: BaseModel, status: int = 200, *, exclude: set[str] | None = None
) -> web.Response:
    return web.Response(
        status=status, text=model.model_dump_json(exclude=exclude), content_type="application/json"
    )
