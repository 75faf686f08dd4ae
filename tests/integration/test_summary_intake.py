"""The summary door over a real socket, on both stores: what a refusal answers and logs.

A refused summary's problems are answered (422) and kept as the log entry's reasons, so they
must never carry a key the summary does not declare (QA found an email in the append-only
log); null is never "absent and fine"; a table has at most MAX_CELLS cells; and a body
refused unread (413, 415) is logged like any other refusal.
"""

from __future__ import annotations

import json
from typing import Any

from structlog.testing import capture_logs

from gateway.adapters.attribute_export import MAX_CELLS
from gateway.models import Role
from tests.integration.conftest import MAX_JSON_BYTES, Live
from tests.integration.test_exports import PARTNER, SUMMARIES, auth, entries, key_for

EMAIL = "hanako.sato@example.jp"
SECRETS = (EMAIL, "Hanako_Sato", "M-000123")
NO_OTHER = "a summary holds no other key"


async def post(live: Live, key: str, body: object) -> tuple[int, dict[str, Any]]:
    resp = await live.api.http.post(SUMMARIES, json=body, headers=auth(key))
    answer: dict[str, Any] = await resp.json(content_type=None)
    return resp.status, answer


async def refusals(live: Live) -> list[dict[str, Any]]:
    found = await entries(live, partner_id=PARTNER, outcome="denied")
    assert all(e["received"]["refused"] for e in found)
    return found


def pointers(problem: dict[str, Any]) -> list[str]:
    return [e["pointer"] for e in problem["errors"]]


async def test_a_refusal_never_names_an_undeclared_key(live: Live) -> None:
    recipient = await key_for(live, Role.RECIPIENT, PARTNER)
    bodies = [  # the two QA repros
        {
            "upload_id": "up_r1",
            "dimensions": "x",
            "cells": [{"values": {EMAIL: 1}, "count": 12}],
        },
        {
            "upload_id": "up_k1",
            "dimensions": ["age_band"],
            "cells": [
                {"values": {"age_band": "30-39"}, "count": 12, "Hanako_Sato": 1, "M-000123": {}}
            ],
        },
    ]
    with capture_logs() as logs:
        answers = [await post(live, recipient, body) for body in bodies]
    assert [status for status, _ in answers] == [422, 422]
    assert pointers(answers[0][1]) == ["/dimensions"]
    assert answers[1][1]["errors"] == [
        {"pointer": "/cells/0", "detail": "2 undeclared key(s), not named: " + NO_OTHER}
    ]
    logged = await refusals(live)
    assert len(logged) == 2
    for text in (json.dumps(answers), json.dumps(logged), json.dumps(logs, default=str)):
        for secret in SECRETS:
            assert secret not in text


async def test_null_dimensions_are_refused_and_logged(live: Live) -> None:
    recipient = await key_for(live, Role.RECIPIENT, PARTNER)
    body = {"upload_id": "up_d0", "dimensions": None, "cells": [{"values": {}, "count": 12}]}
    status, problem = await post(live, recipient, body)
    assert status == 422, problem  # was a 500 (an assertion) with nothing logged
    assert pointers(problem) == ["/dimensions"]
    (refusal,) = await refusals(live)
    assert refusal["reasons"][0]["message"].startswith("/dimensions: ")


async def test_null_cells_are_refused_not_dropped(live: Live) -> None:
    recipient = await key_for(live, Role.RECIPIENT, PARTNER)
    cells = [
        {"values": {"age_band": "30-39"}, "count": 12},
        {"values": {"age_band": "40-49"}, "count": None},
        {"values": None, "count": 3000},
    ]
    body = {"upload_id": "up_n3", "dimensions": ["age_band"], "cells": cells}
    status, problem = await post(live, recipient, body)
    assert status == 422, problem  # was 201 with "cells": 1
    assert pointers(problem) == ["/cells/1/count", "/cells/2/values"]
    body = {"upload_id": "up_n4", "dimensions": ["age_band"], "cells": cells[1:]}
    status, problem = await post(live, recipient, body)
    assert status == 422, problem  # was 400 "not valid JSON"
    sender = await key_for(live, Role.SENDER, PARTNER)
    listed = await live.api.http.get(SUMMARIES, headers=auth(sender))
    assert (await listed.json())["summaries"] == []
    assert len(await refusals(live)) == 2


async def test_a_table_of_more_than_max_cells_is_refused_and_logged(live: Live) -> None:
    recipient = await key_for(live, Role.RECIPIENT, PARTNER)
    cells = [{"values": {}, "count": 10}] * (MAX_CELLS + 1)
    body = json.dumps(
        {"upload_id": "up_big", "dimensions": [], "cells": cells}, separators=(",", ":")
    )
    assert len(body) < MAX_JSON_BYTES  # refused for its cells, not its bytes
    resp = await live.api.http.post(
        SUMMARIES, data=body, headers={**auth(recipient), "Content-Type": "application/json"}
    )
    assert resp.status == 422
    problem = await resp.json(content_type=None)
    assert problem["errors"] == [
        {
            "pointer": "/cells",
            "detail": f"at most {MAX_CELLS} cells in a summary, not {MAX_CELLS + 1}",
        }
    ]
    (refusal,) = await refusals(live)
    assert refusal["reasons"] == [
        {
            "code": "summary_refused",
            "message": f"/cells: at most {MAX_CELLS} cells in a summary, not {MAX_CELLS + 1}",
        }
    ]


async def test_a_body_refused_unread_is_logged_too(live: Live) -> None:
    recipient = await key_for(live, Role.RECIPIENT, PARTNER)
    too_large = b'{"upload_id": "up_x", "pad": "' + b"x" * MAX_JSON_BYTES + b'"}'
    resp = await live.api.http.post(
        SUMMARIES, data=too_large, headers={**auth(recipient), "Content-Type": "application/json"}
    )
    assert resp.status == 413
    assert str(MAX_JSON_BYTES) in (await resp.json(content_type=None))["detail"]
    resp = await live.api.http.post(
        SUMMARIES, data=b"up_x,12", headers={**auth(recipient), "Content-Type": "text/csv"}
    )
    assert resp.status == 415
    logged = await refusals(live)
    assert [e["reasons"] for e in logged] == [
        [
            {
                "code": "summary_refused",
                "message": "/: not read: the body is larger than the gateway accepts",
            }
        ],
        [{"code": "summary_refused", "message": "/: not read: the body is not application/json"}],
    ]
    assert [e["payload_sha256"] for e in logged] == [None, None]  # nothing was read whole
    assert all(e["subject"] == {"id": "", "key": ""} for e in logged)


async def test_a_dimension_the_contract_does_not_allow_is_refused_and_logged(live: Live) -> None:
    # The sample contract allows age_band, gender, prefecture, interest and life_stage. A
    # member number under a harmless name, every count at the minimum, passes every other
    # check: the contract's list is what refuses it.
    recipient = await key_for(live, Role.RECIPIENT, PARTNER)
    cells = [{"values": {"age_band": "30-39", "card": f"C{n:05d}"}, "count": 10} for n in range(3)]
    body = {"upload_id": "up_c1", "dimensions": ["age_band", "card"], "cells": cells}
    status, problem = await post(live, recipient, body)
    assert status == 422, problem
    assert problem["errors"][0] == {
        "pointer": "/dimensions/1",
        "detail": "is not among the dimensions the contract allows",
    }
    assert "C00001" not in json.dumps(problem)
    (refusal,) = await refusals(live)
    assert refusal["reasons"][0]["message"] == (
        "/dimensions/1: is not among the dimensions the contract allows"
    )
    allowed = {"upload_id": "up_c2", "dimensions": ["age_band", "life_stage"], "cells": [
        {"values": {"age_band": "30-39", "life_stage": "family"}, "count": 10},
    ]}  # fmt: skip
    status, answer = await post(live, recipient, allowed)
    assert status == 201, answer
