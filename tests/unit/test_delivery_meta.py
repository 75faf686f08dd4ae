"""DeliveryMeta: the bytes stored with an outbox row, and what the worker reads back."""

from __future__ import annotations

import json
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.cooperative import in_slices
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


@pytest.mark.parametrize("count", [499, 500, 501, 10_000])
async def test_a_large_row_is_encoded_and_decoded_in_steps_to_the_same_bytes(count: int) -> None:
    """10,000 subjects take some 20 ms to encode: the worker and the planners run `encoded`
    and `decoded` in slices (gateway.cooperative), and the bytes are encode's."""
    rows = tuple((f"cust-{n}", f"key-{n}", None if n % 7 else f"{n:064x}") for n in range(count))
    meta = DeliveryMeta(purpose="p", legal_basis="consent", subjects=rows)
    body = {"purpose": "p", "legal_basis": "consent", "subjects": [list(s) for s in rows]}
    expected = zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 1)
    pauses = 0

    async def pause() -> None:
        nonlocal pauses
        pauses += 1

    assert await in_slices(meta.encoded(), pause, slice_s=0.0) == expected
    assert pauses == -(-count // 500)  # a step per 500 subjects
    assert await in_slices(DeliveryMeta.decoded(expected), pause, slice_s=0.0) == meta
    assert pauses == 2 * -(-count // 500)
