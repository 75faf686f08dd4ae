"""Simulated attribute-estimation recipient (target "point-program").

    POST /point-program/v1/uploads
    Content-Type: text/csv; charset=Shift_JIS        (or text/tab-separated-values; see uploads)
    Idempotency-Key: <optional>
    <header row>
    <one row per member>

    202 {"upload_id": "up_<16 hex>", "rows": N}
    400 {"error": "..."}  not in the declared charset, no header row, bad delimiter
    415 {"error": "..."}  another media type or an unknown charset

When `SandboxState.summary_callback` is set, each newly accepted upload (not a replay) schedules
a POST of its statistical summary to the callback URL after `delay_s`, with
`Authorization: Bearer <api_key>`; its outcome is counted in stats (`summaries_posted`,
`summary_statuses`: HTTP status, or "error" when no answer came).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from gateway.sandbox.lifecycle import RUNTIME, STATE, Runtime
from gateway.sandbox.pipeline import Outcome, json_error, partner_route, respond_once, stored_json
from gateway.sandbox.state import POINT_PROGRAM, SandboxState, SummaryCallback
from gateway.sandbox.uploads import (
    ParsedUpload,
    UploadRejected,
    build_summary,
    parse_media_type,
    parse_upload,
)

PATH = "/point-program/v1/uploads"
BODY_LIMIT = 512 * 1024 * 1024  # a million members' rows is ~100 MB
THREAD_THRESHOLD = 256 * 1024  # bigger files are parsed off the event loop

log = structlog.get_logger("gateway.sandbox")


async def _upload(request: web.Request, body: bytes) -> web.StreamResponse:
    state = request.app[STATE]
    try:
        media = parse_media_type(request.headers.get("Content-Type", ""))
        if len(body) > THREAD_THRESHOLD:
            parsed = await asyncio.to_thread(parse_upload, body, media)
        else:
            parsed = parse_upload(body, media)
    except UploadRejected as exc:
        state.reject(POINT_PROGRAM)
        return json_error(exc.status, str(exc))

    def process() -> Outcome:
        return _accept(state, request.app[RUNTIME], parsed)

    return respond_once(request, POINT_PROGRAM, process)


def _accept(state: SandboxState, runtime: Runtime, parsed: ParsedUpload) -> Outcome:
    upload_id = state.new_token("up_")
    callback = state.summary_callback
    if callback is not None:
        summary = build_summary(
            upload_id, parsed, mode=callback.mode, min_cell_count=state.min_cell_count
        )
        runtime.spawn(post_summary(state, runtime, callback, summary))
    answer = {"upload_id": upload_id, "rows": parsed.rows}
    return stored_json(202, answer), dict(answer), {"uploads": 1, "rows": parsed.rows}


async def post_summary(
    state: SandboxState, runtime: Runtime, callback: SummaryCallback, summary: dict[str, Any]
) -> None:
    """POST `summary` to the callback after its delay and count the outcome; never raises but
    CancelledError (the app is stopping)."""
    await asyncio.sleep(callback.delay_s)
    headers = {"Authorization": f"Bearer {callback.api_key}"}
    try:
        async with runtime.client().post(callback.url, json=summary, headers=headers) as resp:
            await resp.read()
            status = str(resp.status)
    except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
        # The URL and key stay out of the log: the key is a secret, the URL may embed one.
        log.warning(
            "summary_callback_failed", upload_id=summary["upload_id"], error=type(exc).__name__
        )
        status = "error"
    state.record_summary_status(status)


def add_routes(app: web.Application) -> None:
    route = partner_route(POINT_PROGRAM, _upload, error=json_error, body_limit=BODY_LIMIT)
    app.router.add_post(PATH, route)
