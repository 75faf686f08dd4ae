"""DeliveryMeta: the bytes stored with an outbox row, and what the worker reads back."""

from __future__ import annotations

import json
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.delivery.outbox import DeliveryMeta

subjects = st.lists(
    st.tuples(st.text(max_size=12), st.text(max_size=12), st.none() | st.text(max_size=64)),
    max_size=20,
).map(tuple)


@given(st.text(max_size=20), st.none() | st.text(max_size=20), subjects)
def test_the_bytes_are_the_documented_json_compressed(
    purpose: str, legal_basis: str | None, rows: tuple[tuple[str, str, str | None], ...]
) -> None:
    meta = DeliveryMeta(purpose=purpose, legal_basis=legal_basis, subjects=rows)
    # What encode has always written: each subject as a JSON array, compact, zlib level 1.
    body = {"purpose": purpose, "legal_basis": legal_basis, "subjects": [list(s) for s in rows]}
    expected = zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 1)
    assert meta.encode() == expected
    assert DeliveryMeta.decode(meta.encode()) == meta


def test_bytes_encode_did_not_write_are_refused() -> None:
    with pytest.raises(ValueError, match="not delivery meta"):
        DeliveryMeta.decode(b"not zlib")
