"""What a Customer Match job reports: its rejections download and its counts, over real
sockets, on both stores.

Every rejection the planner makes reaches the download, whole: two with the same code on one
line, a line whose rejections straddle a download page, a record sent without the address
parts it gave or without an identifier it gave twice. `received` adds up to the outcomes.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from gateway.models import Role
from tests.integration.conftest import Live
from tests.integration.test_customer_match import PARAMS, grant, settled, upload

HEX = "0123456789abcdef" * 4
PATH = "/v1/provisions/customer-match"


async def rejections(live: Live, job_id: str) -> list[dict[str, Any]]:
    """The job's rejections as JSONL rows, and checked to be the same rows as the CSV."""
    resp = await live.api.call("GET", f"/v1/jobs/{job_id}/rejections", Role.SENDER)
    assert resp.status == 200, await resp.text()
    rows = [json.loads(line) for line in (await resp.text()).splitlines()]
    resp = await live.api.call("GET", f"/v1/jobs/{job_id}/rejections?format=csv", Role.SENDER)
    assert resp.status == 200, await resp.text()
    table = list(csv.DictReader(io.StringIO(await resp.text())))
    as_text = [{k: "" if v is None else str(v) for k, v in row.items()} for row in rows]
    assert table == as_text
    return rows


async def post_csv(live: Live, key: str, body: str) -> dict[str, Any]:
    query = "&".join(f"{k}={v}" for k, v in {**PARAMS, "idempotency_key": key}.items())
    resp = await live.api.call(
        "POST", f"{PATH}?{query}", Role.SENDER, data=body, headers={"Content-Type": "text/csv"}
    )
    assert resp.status == 202, await resp.text()
    job: dict[str, Any] = await resp.json()
    return job


async def test_a_line_straddling_a_download_page_is_listed_whole(live: Live) -> None:
    """5,999 rows (a first line of one, then 2,999 lines of two): the 5,000-row page ends
    inside line 2,501, whose second row the next page must still hold."""
    await grant(live, "cust-1")
    lines = ["subject_id,email,phone,phone_sha256", "cust-1,one@example.com,12,"]
    lines += ["cust-1,one@example.com,12,xyz"] * 2_999  # invalid_phone and invalid_hash
    job = await post_csv(live, "k-pages", "\r\n".join(lines) + "\r\n")
    assert job["counts"]["allowed"] == 3_000
    rows = await rejections(live, job["job_id"])
    expected = [(1, "invalid_phone", "phone")]
    for line in range(2, 3_001):
        expected += [(line, "invalid_phone", "phone"), (line, "invalid_hash", "phone_sha256")]
    assert [(r["line"], r["code"], r["field"]) for r in rows] == expected


async def test_rejections_with_one_code_twice_on_a_line_are_all_kept(live: Live) -> None:
    await grant(live, "cust-1", "cust-2")
    records = [
        {
            "subject_id": "cust-1",
            "email": "one@example.com",
            "given_name": "!!",  # empty once punctuation is gone
            "family_name": "...",
            "region_code": "JP",
            "postal_code": "100-0001",
        },
        {"subject_id": "cust-2", "email_sha256": "xyz", "phone_sha256": "not hex either"},
    ]
    job = await upload(live, records, "k-twice")
    rows = await rejections(live, job["job_id"])
    assert [(r["line"], r["code"], r["field"]) for r in rows] == [
        (1, "empty", "given_name"),
        (1, "empty", "family_name"),
        (1, "address_incomplete", "region_code"),  # region and postal code were not sent
        (2, "invalid_hash", "email_sha256"),
        (2, "invalid_hash", "phone_sha256"),
        (2, "no_identifier", None),
    ]
    assert (job["counts"]["allowed"], job["counts"]["denied"]) == (1, 1)


async def logged_items(live: Live, transfer_id: str) -> dict[str, tuple[list[str], list[str]]]:
    """Per subject, the `allowed` entry's items (fields sent) and fields_dropped."""
    out = {}
    for leaf in await live.api.services.store.ledger_transfer(transfer_id):
        entry = json.loads(leaf.leaf or b"{}")
        if entry["outcome"] == "allowed":
            items = [i["field"] for i in entry["items"]]
            out[entry["subject"]["id"]] = (items, entry["fields_dropped"])
    return out


async def test_address_parts_not_sent_are_reported(live: Live) -> None:
    await grant(live, "m6", "m7")
    records = [
        {"subject_id": "m6", "email": "a@b.com", "given_name": "Only"},
        {"subject_id": "m7", "email": "c@d.com", "given_name": "Dana", "family_name": "Sato",
         "region_code": "US", "postal_code": "9404"},  # not a US postal code: no address
    ]  # fmt: skip
    job = await upload(live, records, "k-address")
    assert (job["counts"]["allowed"], job["counts"]["denied"]) == (2, 0)
    rows = await rejections(live, job["job_id"])
    assert [(r["line"], r["subject_id"], r["code"], r["field"]) for r in rows] == [
        (1, "m6", "address_incomplete", "given_name"),
        (2, "m7", "invalid_postal_code", "postal_code"),
        (2, "m7", "address_incomplete", "given_name"),
    ]
    for row in (rows[0], rows[2]):
        for part in ("given_name", "family_name", "region_code", "postal_code"):
            assert part in row["message"]  # what an address needs
    text = json.dumps(rows)
    for value in ("Only", "Dana", "Sato", "9404"):
        assert value not in text
    done = await settled(live, job["job_id"])
    assert done["counts"]["delivered"] == 2  # the emails went
    items = await logged_items(live, job["transfer_id"])
    assert items == {"m6": (["email"], []), "m7": (["email"], [])}


async def test_an_identifier_given_raw_and_hashed_is_sent_once_and_reported(
    live: Live,
) -> None:
    await grant(live, "cust-1", "cust-2")
    records = [
        {"subject_id": "cust-1", "email": "one@example.com", "email_sha256": HEX},
        {"subject_id": "cust-2", "email": "not an email", "email_sha256": HEX,
         "phone": "090-1234-5678", "phone_sha256": HEX[::-1]},
    ]  # fmt: skip
    job = await upload(live, records, "k-dup")
    rows = await rejections(live, job["job_id"])
    assert [(r["line"], r["code"], r["field"]) for r in rows] == [
        (1, "identifier_given_twice", "email_sha256"),
        (2, "invalid_email", "email"),  # the raw email is refused: the digest is sent
        (2, "identifier_given_twice", "phone_sha256"),  # the raw phone wins
    ]
    assert HEX not in json.dumps(rows)
    await settled(live, job["job_id"])
    items = await logged_items(live, job["transfer_id"])
    # The log lists what was sent, never the identifier that was not.
    assert items == {"cust-1": (["email"], []), "cust-2": (["phone", "email_sha256"], [])}


async def test_received_counts_records_not_lines(live: Live) -> None:
    """A blank line (and the header) is no record: received = allowed + denied + invalid."""
    await grant(live, *(f"cust-{n}" for n in range(1, 6)))
    body = (
        "subject_id,email\r\n"
        + "".join(f"cust-{n},p{n}@example.com\r\n" for n in range(1, 5))
        + "\r\n"  # a blank line amid the records
        + "cust-5,p5@example.com\r\ncust-6,p6@example.com\r\n"  # cust-6: no consent
        + 'cust-7,"broken\r\n'
        + "cust-8,\r\n"  # no identifier at all
    )
    job = await post_csv(live, "k-blank", body)
    counts = job["counts"]
    assert (counts["allowed"], counts["denied"], counts["invalid"]) == (5, 2, 1)
    assert counts["received"] == 8
    lines = [r["line"] for r in await rejections(live, job["job_id"])]
    assert lines == [7, 8, 9]  # lines count from the first after the header, blank included
    done = await settled(live, job["job_id"])
    assert done["counts"]["received"] == 8


async def test_a_dead_letter_is_counted_failed_not_listed_as_rejected(live: Live) -> None:
    """Rejections are what reading the records found; a delivery that failed is seen in the
    job's counts (and the outbox, and the log), as docs/provisions.md says."""
    await grant(live, "cust-1")
    contract = live.api.services.contracts["google-customer-match"]
    endpoint = contract.endpoint.model_copy(update={"url": live.sandbox_url + "/nowhere"})
    broken = contract.model_copy(update={"endpoint": endpoint})
    live.api.services.contracts["google-customer-match"] = broken  # type: ignore[index]
    job = await upload(live, [{"subject_id": "cust-1", "email": "one@example.com"}], "k-dead")
    done = await settled(live, job["job_id"])
    assert done["state"] == "failed"
    assert (done["counts"]["failed"], done["requests"]["dead"]) == (1, 1)
    assert await rejections(live, job["job_id"]) == []
