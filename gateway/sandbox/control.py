"""Control endpoints, for tests and demos only: read counters, set faults, reset, and point the
point-program recipient's summaries somewhere. All under `/_control/`:

    GET    /_control/stats                      SandboxState.stats()
    GET    /_control/keys?target=T[&digests=0]  accepted idempotency keys of T and what each
                                                carried (Data Manager: member count and 8-byte
                                                member digests in hex, see members)
    GET    /_control/faults                     the plan in force per target (null: none)
    POST   /_control/faults                     {"target": T or "*", "rate": .., "kinds": [..],
                                                 "retry_after": .., "latency_ms": ..,
                                                 "timeout_s": .., "first_n": ..}  -> 204
    DELETE /_control/faults                     clear every plan -> 204
    POST   /_control/reset                      forget counters and received data -> 204
    POST   /_control/summary-callback           {"url", "api_key", "delay_s", "mode"} -> 204
    DELETE /_control/summary-callback           stop posting summaries -> 204

Malformed control bodies get 400 {"error": "..."}. The callback's api_key is never echoed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.sandbox.lifecycle import STATE
from gateway.sandbox.members import MemberBatch
from gateway.sandbox.pipeline import json_error
from gateway.sandbox.state import TARGETS, FaultPlan, SummaryCallback

PREFIX = "/_control"
_PLAN_NUMBERS = ("rate", "retry_after", "latency_ms", "timeout_s")
_PLAN_FIELDS = frozenset({"target", "kinds", "first_n", *_PLAN_NUMBERS})
_CALLBACK_FIELDS = frozenset({"url", "api_key", "delay_s", "mode"})


class ControlRejected(ValueError):
    """A control request body is malformed; the message says why."""


def plan_from_json(body: Any) -> tuple[str, FaultPlan]:
    """(target, plan) from a POST /_control/faults body. Raises ControlRejected."""
    fields = _object(body, _PLAN_FIELDS)
    target = fields.pop("target", None)
    if not isinstance(target, str):
        raise ControlRejected('"target" must be a target name or "*"')
    for name in _PLAN_NUMBERS:
        if name in fields:
            fields[name] = _number(fields[name], name)
    if "first_n" in fields:
        first_n = fields["first_n"]
        if isinstance(first_n, bool) or not isinstance(first_n, int):
            raise ControlRejected('"first_n" must be an integer')
    if "kinds" in fields:
        kinds = fields["kinds"]
        if not isinstance(kinds, list) or not all(isinstance(k, str | int) for k in kinds):
            raise ControlRejected('"kinds" must be a list of fault kinds')
        fields["kinds"] = tuple(str(k) for k in kinds)
    try:
        return target, FaultPlan(**fields)
    except ValueError as exc:
        raise ControlRejected(str(exc)) from exc


def callback_from_json(body: Any) -> SummaryCallback:
    """A SummaryCallback from a POST /_control/summary-callback body. Raises ControlRejected."""
    fields = _object(body, _CALLBACK_FIELDS)
    if not isinstance(fields.get("url"), str) or not isinstance(fields.get("api_key"), str):
        raise ControlRejected('"url" and "api_key" are required strings')
    if "delay_s" in fields:
        fields["delay_s"] = _number(fields["delay_s"], "delay_s")
    if not isinstance(fields.get("mode", "ok"), str):
        raise ControlRejected('"mode" must be a string')
    try:
        return SummaryCallback(**fields)
    except ValueError as exc:
        raise ControlRejected(str(exc)) from exc


def _object(body: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ControlRejected("the body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ControlRejected(f"unknown field(s): {', '.join(unknown)}")
    return dict(body)


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ControlRejected(f'"{name}" must be a number')
    return float(value)


def record_json(record: Any, *, digests: bool) -> Any:
    if isinstance(record, MemberBatch):
        return record.as_json(digests=digests)
    return record


async def _json_body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except (ValueError, RecursionError) as exc:
        raise ControlRejected("the body is not JSON") from exc


async def _stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats())


async def _keys(request: web.Request) -> web.Response:
    target = request.query.get("target", "")
    if target not in TARGETS:
        return json_error(400, f"target must be one of {', '.join(TARGETS)}")
    digests = request.query.get("digests", "1") not in ("0", "false")
    accepted = request.app[STATE].accepted(target)
    keys = {key: record_json(record, digests=digests) for key, record in accepted.items()}
    return web.json_response({"target": target, "keys": keys})


async def _get_faults(request: web.Request) -> web.Response:
    state = request.app[STATE]
    plans: Mapping[str, FaultPlan | None] = {t: state.faults(t) for t in TARGETS}
    body = {t: dataclasses.asdict(p) if p else None for t, p in plans.items()}
    return web.json_response(body)


async def _set_faults(request: web.Request) -> web.Response:
    try:
        target, plan = plan_from_json(await _json_body(request))
        request.app[STATE].set_faults(target, plan)
    except ValueError as exc:  # ControlRejected, or an unknown target
        return json_error(400, str(exc))
    return web.Response(status=204)


async def _clear_faults(request: web.Request) -> web.Response:
    request.app[STATE].clear_faults()
    return web.Response(status=204)


async def _reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return web.Response(status=204)


async def _set_callback(request: web.Request) -> web.Response:
    try:
        request.app[STATE].summary_callback = callback_from_json(await _json_body(request))
    except ControlRejected as exc:
        return json_error(400, str(exc))
    return web.Response(status=204)


async def _clear_callback(request: web.Request) -> web.Response:
    request.app[STATE].summary_callback = None
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get(f"{PREFIX}/stats", _stats)
    router.add_get(f"{PREFIX}/keys", _keys)
    router.add_get(f"{PREFIX}/faults", _get_faults)
    router.add_post(f"{PREFIX}/faults", _set_faults)
    router.add_delete(f"{PREFIX}/faults", _clear_faults)
    router.add_post(f"{PREFIX}/reset", _reset)
    router.add_post(f"{PREFIX}/summary-callback", _set_callback)
    router.add_delete(f"{PREFIX}/summary-callback", _clear_callback)
