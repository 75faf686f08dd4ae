"""RFC 8785 canonical JSON: the RFC's own examples, its number table, and properties.

Vectors: RFC 8785 §3.2.3 (sorting) and §3.2.4 (the example's exact bytes), Appendix B (IEEE
754 to ECMAScript number serialization), and cyberphone/json-canonicalization's testdata
"weird" document with its published output bytes.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.ledger.canonical import (
    MAX_SAFE_INTEGER,
    CanonicalizationError,
    JsonValue,
    canonicalize,
    canonicalize_general,
    fast_path_applies,
    format_number,
)

RFC_3_2_2_INPUT = r"""{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC_3_2_4_BYTES = bytes.fromhex(
    "7b226c69746572616c73223a5b6e756c6c2c747275652c66616c73655d2c226e756d62657273223a5b"
    "3333333333333333332e333333333333332c31652b33302c342e352c302e3030322c31652d32375d2c"
    "22737472696e67223a22e282ac245c75303030665c6e4127425c225c5c5c5c5c222f227d"
)
RFC_3_2_3_INPUT = r"""{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"""
RFC_3_2_3_ORDER = [
    "Carriage Return",
    "One",
    "Control",
    "Latin Small Letter O With Diaeresis",
    "Euro Sign",
    "Emoji: Grinning Face",  # U+1F600 is D83D DE00 in UTF-16: before U+FB33
    "Hebrew Letter Dalet With Dagesh",
]
WEIRD_INPUT = r"""{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\u000a": "Newline",
  "1": "One",
  "\u0080": "Control\u007f",
  "\ud83d\ude02": "Smiley",
  "\u00f6": "Latin Small Letter O With Diaeresis",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "</script>": "Browser Challenge"
}"""
WEIRD_BYTES = bytes.fromhex(
    "7b225c6e223a224e65776c696e65222c225c72223a2243617272696167652052657475726e222c2231223a"
    "224f6e65222c223c2f7363726970743e223a2242726f77736572204368616c6c656e6765222c22c280223a"
    "22436f6e74726f6c7f222c22c3b6223a224c6174696e20536d616c6c204c6574746572204f2057697468"
    "20446961657265736973222c22e282ac223a224575726f205369676e222c22f09f9882223a22536d696c"
    "6579222c22efacb3223a22486562726577204c65747465722044616c6574205769746820446167657368227d"
)
APPENDIX_B = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("8000000000000001", "-5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("ffefffffffffffff", "-1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("c340000000000000", "-9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


def _double(hex_bits: str) -> float:
    value: float = struct.unpack(">d", bytes.fromhex(hex_bits))[0]
    return value


def test_rfc_3_2_4_example_bytes() -> None:
    assert canonicalize(json.loads(RFC_3_2_2_INPUT)) == RFC_3_2_4_BYTES


def test_rfc_3_2_3_sorting_by_utf16_code_units() -> None:
    out = canonicalize(json.loads(RFC_3_2_3_INPUT)).decode("utf-8")
    assert list(json.loads(out).values()) == RFC_3_2_3_ORDER


def test_cyberphone_weird_document() -> None:
    assert canonicalize(json.loads(WEIRD_INPUT)) == WEIRD_BYTES


@pytest.mark.parametrize(("bits", "expected"), APPENDIX_B)
def test_rfc_appendix_b_numbers(bits: str, expected: str) -> None:
    assert format_number(_double(bits)) == expected
    assert canonicalize([_double(bits)]) == f"[{expected}]".encode()


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (333333333.33333329, "333333333.3333333"),
        (1e30, "1e+30"),
        (4.50, "4.5"),
        (2e-3, "0.002"),
        (0.000000000000000000000000001, "1e-27"),
        (1e21, "1e+21"),
        (1e20, "100000000000000000000"),
        (1e-7, "1e-7"),
        (0.000001, "0.000001"),
        (-0.0, "0"),
        (1.0, "1"),
        (-1.5, "-1.5"),
        (123456789.125, "123456789.125"),
    ],
)
def test_es6_number_examples(number: float, expected: str) -> None:
    assert format_number(number) == expected


@pytest.mark.parametrize("bits", ["7fffffffffffffff", "7ff0000000000000", "fff0000000000000"])
def test_nan_and_infinity_are_rejected(bits: str) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize({"n": _double(bits)})


def test_string_escapes_follow_json_stringify() -> None:
    text = "".join(chr(c) for c in range(0x20)) + '"\\/\x7f\u2028\u2029é\U0001f600'
    expected = (
        '"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r'
        "\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018"
        '\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\\"\\\\/\x7f\u2028\u2029é\U0001f600"'
    ).encode()
    assert canonicalize(text) == expected
    assert canonicalize_general(text) == expected


def test_literals_integers_and_nesting() -> None:
    value: JsonValue = {
        "b": [True, False, None, 1, -1, 0],
        "a": {"z": [], "y": {}},
        "c": MAX_SAFE_INTEGER,
    }
    expected = b'{"a":{"y":{},"z":[]},"b":[true,false,null,1,-1,0],"c":9007199254740991}'
    assert canonicalize(value) == expected
    assert canonicalize_general(value) == expected
    assert canonicalize((1, "x", (2.5,))) == b'[1,"x",[2.5]]'  # tuples are arrays


@pytest.mark.parametrize(
    "value",
    [
        MAX_SAFE_INTEGER + 1,
        -MAX_SAFE_INTEGER - 1,
        {"big": 2**64},
        "lone \ud800 surrogate",
        {"k": ["\udc00"]},
        {"\ud800": 1},
        {1: "int key"},
        {(1, 2): "tuple key"},
        b"bytes",
        {"set": {1, 2}},
        {"object": object()},
        [math.nan],
        [math.inf],
    ],
)
def test_non_json_is_rejected(value: Any) -> None:
    with pytest.raises(CanonicalizationError):
        canonicalize(value)
    with pytest.raises(CanonicalizationError):
        canonicalize_general(value)


def test_circular_and_deep_values_are_rejected() -> None:
    loop: list[Any] = []
    loop.append(loop)
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    for value in (loop, deep, {"a": loop}):
        with pytest.raises(CanonicalizationError, match="nested"):
            canonicalize(value)


def test_fast_path_applies_only_where_stdlib_output_is_jcs() -> None:
    assert fast_path_applies({"a": [1, "é", None, True, {"b": -3}]})
    assert fast_path_applies([])
    assert not fast_path_applies({"a": 1.5})
    assert not fast_path_applies({"é": 1})
    assert not fast_path_applies({"a": (1,)})
    assert not fast_path_applies({"a": 2**53})
    assert not fast_path_applies({1: 1})
    assert not fast_path_applies(1.0)


# -- properties -------------------------------------------------------------------------------

SAFE_INTS = st.integers(min_value=-MAX_SAFE_INTEGER, max_value=MAX_SAFE_INTEGER)
TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)  # no lone surrogates
ASCII_KEYS = st.text(st.characters(max_codepoint=0x7F), max_size=8)
FINITE = st.floats(allow_nan=False, allow_infinity=False)

# The fast path's domain: ASCII keys, no floats, non-ASCII and control characters in values.
PLAIN_JSON = st.recursive(
    st.none() | st.booleans() | SAFE_INTS | TEXT,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(ASCII_KEYS, inner, max_size=5),
    max_leaves=25,
)
# Any JSON: floats, keys anywhere in Unicode (astral ones too), tuples as arrays.
ANY_JSON = st.recursive(
    st.none() | st.booleans() | SAFE_INTS | FINITE | TEXT,
    lambda inner: (
        st.lists(inner, max_size=5)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(TEXT, inner, max_size=5)
    ),
    max_leaves=25,
)


def _stdlib(value: JsonValue) -> bytes:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


@settings(max_examples=300, deadline=None)
@given(PLAIN_JSON)
def test_fast_path_is_byte_identical_to_jcs(value: JsonValue) -> None:
    assert fast_path_applies(value)
    assert _stdlib(value) == canonicalize_general(value) == canonicalize(value)


@settings(max_examples=300, deadline=None)
@given(ANY_JSON)
def test_both_paths_agree_and_the_detector_is_sound(value: JsonValue) -> None:
    general = canonicalize_general(value)
    assert canonicalize(value) == general
    if fast_path_applies(value):  # wherever the fast path is taken, it is right
        assert _stdlib(value) == general


def _utf16(key: str) -> bytes:
    return key.encode("utf-16-be")


@settings(max_examples=200, deadline=None)
@given(ANY_JSON)
def test_output_is_json_for_the_same_value_and_a_fixed_point(value: JsonValue) -> None:
    # Read numbers back as doubles, as ECMAScript does: 2.0**68 is written 295147905179352830000,
    # which Python would otherwise read as an int that is not the double.
    out = canonicalize(value)
    parsed = json.loads(out, parse_int=float)
    assert canonicalize(parsed) == out  # canonical form is idempotent
    assert parsed == json.loads(json.dumps(value), parse_int=float)  # tuples come back lists
    if isinstance(parsed, dict):  # members in UTF-16 code-unit order (§3.2.3)
        keys = list(parsed)
        assert keys == sorted(keys, key=_utf16)


@settings(max_examples=300, deadline=None)
@given(FINITE)
def test_numbers_round_trip_with_the_fewest_digits(number: float) -> None:
    text = format_number(number)
    assert float(text) == number
    digits = text.lstrip("-").split("e")[0].replace(".", "").strip("0")
    assert len(digits) <= len(repr(abs(number)).split("e")[0].replace(".", "").strip("0"))
