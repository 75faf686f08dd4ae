"""RFC 8785 §3.2.3: a member's name is its string value, whatever Python type carries it."""

from __future__ import annotations

import json
from enum import Enum

from gateway.ledger.canonical import canonicalize, canonicalize_general


# A str-mixin Enum (the pre-StrEnum idiom, still common): str() gives "_Kind.PLAIN", while
# its string value, which json.dumps writes, is "plain".
class _Kind(str, Enum):  # noqa: UP042 (StrEnum's str() is the value: not the case tested)
    PLAIN = "plain"
    EURO = "\u20ac"


def test_a_str_subclass_key_is_written_and_sorted_by_its_string_value() -> None:
    value = {_Kind.EURO: 1, _Kind.PLAIN: _Kind.PLAIN, "z": 2}
    expected = '{"plain":"plain","z":2,"\u20ac":1}'.encode()
    assert canonicalize(value) == canonicalize_general(value) == expected
    assert canonicalize(value) == canonicalize(json.loads(json.dumps(value)))
