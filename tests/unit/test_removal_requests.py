"""Removal requests (gateway.provisions.removal): the members a partner received, read back
from the request it took, and cut into remove requests that send each member once."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from gateway.delivery.outbox import DeliveryState, PendingDelivery
from gateway.provisions.removal import Held, Removal, members_of, requests_of

PARTS = [b'{"userData":{"userIdentifiers":[{"emailAddress":"%d"}]}}' % n for n in range(3)]


def sha(part: bytes) -> str:
    return hashlib.sha256(part).hexdigest()


def held(allowed_index: int, payload_sha256: str, delivered_index: int = 100) -> Held:
    return Held(
        partner_id="google-customer-match",
        purpose="ad_customer_match",
        legal_basis="consent",
        transfer_id="t-1",
        delivery_id="d-1",
        delivered_index=delivered_index + allowed_index,
        allowed_index=allowed_index,
        payload_sha256=payload_sha256,
        subject_key="k",
    )


def ingest_row(first_index: int) -> PendingDelivery:
    payload = b'{"destinations":[],"audienceMembers":[' + b",".join(PARTS) + b'],"encoding":"HEX"}'
    return PendingDelivery(
        seq=1,
        delivery_id="d-1",
        job_id="j-1",
        partner_id="google-customer-match",
        operation="ingest",
        transfer_id="t-1",
        first_index=first_index,
        entry_count=len(PARTS),
        content_type="application/json",
        payload=payload,
        meta=b"",
        state=DeliveryState.DELIVERED,
        attempts=1,
        last_error=None,
    )


def test_members_are_read_at_their_position_and_checked_against_the_log() -> None:
    row = ingest_row(first_index=10)
    wanted = [
        held(10, sha(PARTS[0])),
        held(12, sha(PARTS[2])),
        held(11, sha(PARTS[0])),  # the log says another member: not this request's
        held(13, sha(PARTS[2])),  # past the request's entries
        held(9, sha(PARTS[0])),  # before them
    ]
    assert members_of(row, wanted) == {110: PARTS[0], 112: PARTS[2]}


def removal(member: bytes, n: int) -> Removal:
    return Removal(
        held(n, sha(member)), subject_id="cust-1", why="consent_withdrawn", member=member
    )


def test_identical_members_share_a_request_and_each_removal_is_kept() -> None:
    a, b, c = PARTS
    removals = [removal(m, n) for n, m in enumerate([a, a, b, c, a])]
    requests = requests_of(removals, limit=2)
    assert [[r.member for r in request] for request in requests] == [[a, a, b], [c, a]]


@given(st.lists(st.sampled_from(PARTS), max_size=30), st.integers(min_value=1, max_value=3))
def test_requests_keep_every_removal_in_order_within_the_member_limit(
    members: list[bytes], limit: int
) -> None:
    removals = [removal(m, n) for n, m in enumerate(members)]
    requests = requests_of(removals, limit=limit)
    assert [r for request in requests for r in request] == removals
    distinct = [len({r.member for r in request}) for request in requests]
    assert all(1 <= count <= limit for count in distinct)
    assert all(count == limit for count in distinct[:-1])  # a request is cut only when full
