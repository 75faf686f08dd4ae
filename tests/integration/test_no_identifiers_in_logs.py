"""House rule 10: no raw email, phone or name reaches a log line, whatever the request does."""

from __future__ import annotations

import json

from structlog.testing import capture_logs

from gateway.logconfig import REDACTED, redact_identifiers
from tests.integration.conftest import Api

EMAIL = "dana.secret@example.com"
PHONE = "+81-90-1234-5678"
NAME = "Dana Secretname"


async def test_requests_with_identifiers_leave_none_in_the_logs(api: Api) -> None:
    record = {"subject_id": "m-1", "email": EMAIL, "phone": PHONE, "given_name": NAME}
    body = {
        "partner": "google-customer-match",
        "purpose": "ad_customer_match",
        "legal_basis": "consent",
        "records": [record],
    }
    bad_line = json.dumps({"subject_id": "m-2", "purpose": "ad_customer_match", "email": EMAIL})
    with capture_logs() as logs:
        assert (await api.call("POST", "/v1/decisions/preview", json=body)).status == 200
        await api.call(
            "POST",
            "/v1/consents/import",
            data=bad_line + "\n",
            headers={"Content-Type": "application/x-ndjson"},
        )
        await api.call("POST", "/v1/decisions/preview", json={**body, "legal_basis": EMAIL})
    text = json.dumps(logs, default=str)
    assert logs, "the access log should have written something"
    for secret in (EMAIL, PHONE, NAME, "dana.secret"):
        assert secret not in text


def test_the_redaction_processor_is_the_second_line_of_defence() -> None:
    event = {"event": "oops", "email": EMAIL, "phone": PHONE, "subject_key": "k1:ab"}
    out = redact_identifiers(None, "info", event)
    assert out["email"] == REDACTED
    assert out["phone"] == REDACTED
    assert out["subject_key"] == "k1:ab"
