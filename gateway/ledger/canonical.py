"""RFC 8785 JSON Canonicalization Scheme (JCS): the bytes a transfer-log leaf is hashed over.

`canonicalize(value)` takes a Python value built from dict/list/tuple/str/int/float/bool/None
and returns the one UTF-8 byte string that RFC 8785 assigns it. Two paths give the same bytes:

- the general path (`canonicalize_general`) follows the RFC step by step: members sorted by
  UTF-16 code units (§3.2.3), strings escaped as ECMAScript JSON.stringify does (§3.2.2.2),
  numbers written as ECMAScript Number.prototype.toString writes them (§3.2.2.3);
- the fast path hands the value to the C JSON encoder when `fast_path_applies(value)`: every
  object key ASCII and no float anywhere. There the stdlib's output is byte-identical to JCS
  (ASCII keys sort the same by code point and by UTF-16 unit; integers within ±(2^53 - 1) are
  printed the same; the stdlib escapes exactly `"`, `\\` and U+0000..U+001F, with the same
  short forms and lowercase `\\u00xx`). tests/unit/test_canonical.py proves the two agree on
  generated JSON.

Choices the RFC leaves to us, documented in docs/ledger.md:

- integers beyond ±(2^53 - 1) are rejected (I-JSON, RFC 7493 §2.2) rather than rounded to a
  double, so a value never changes silently on its way into the log;
- NaN, ±Infinity, lone surrogates, non-string keys, and any other type raise
  `CanonicalizationError`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, TypeAlias

__all__ = [
    "CanonicalizationError",
    "JsonValue",
    "canonicalize",
    "canonicalize_general",
    "fast_path_applies",
    "format_number",
]

JsonValue: TypeAlias = (
    "bool | int | float | str | Sequence[JsonValue] | Mapping[str, JsonValue] | None"
)

MAX_SAFE_INTEGER: Final = 2**53 - 1  # RFC 7493 §2.2: integers exact in an IEEE 754 double

# RFC 8785 §3.2.2.2: escape `"`, `\` and U+0000..U+001F only; \b \t \n \f \r short forms,
# lowercase \u00xx for the other controls; everything else is written as literal UTF-8.
_ESCAPES: Final[dict[int, str]] = {code: f"\\u{code:04x}" for code in range(0x20)}
_ESCAPES.update(
    {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r", 0x22: '\\"', 0x5C: "\\\\"}
)

# The fast path: one encoder built once (json.dumps would build one per call).
_encode_plain: Final = json.JSONEncoder(
    ensure_ascii=False,
    allow_nan=False,
    sort_keys=True,
    separators=(",", ":"),
    check_circular=False,  # fast_path_applies has walked the value: no cycle gets here
).encode


class CanonicalizationError(ValueError):
    """The value has no RFC 8785 form: not JSON, NaN/Infinity, a lone surrogate, a big int."""


def canonicalize(value: JsonValue) -> bytes:
    """The RFC 8785 canonical UTF-8 bytes of `value`.

    Raises CanonicalizationError for anything that is not JSON (see the module docstring).
    """
    try:
        if fast_path_applies(value):
            return _encode_plain(value).encode("utf-8")
        return canonicalize_general(value)
    except UnicodeEncodeError as exc:  # a lone surrogate in a string value (§3.2.2.2)
        raise CanonicalizationError("string holds a lone surrogate") from exc
    except RecursionError as exc:
        raise CanonicalizationError("value is nested too deeply or is circular") from exc


def fast_path_applies(value: object) -> bool:
    """True when the stdlib encoder's output is RFC 8785 for `value`.

    That is: only exact dict/list/str/int/bool/None, ASCII object keys, integers within
    ±(2^53 - 1). Anything else (a float, a tuple, a subclass) takes the general path, which
    also decides whether it is JSON at all. Raises RecursionError on a circular value.
    """
    if type(value) is dict:
        for key in value:
            if type(key) is not str or not key.isascii():
                return False
        return _plain_items(value.values())
    if type(value) is list:
        return _plain_items(value)
    return _plain_items((value,))


def _plain_items(items: Iterable[object]) -> bool:
    # Inlined type tests: this walk runs before every fast-path encode, so it must stay cheap.
    for item in items:
        if type(item) is str or type(item) is bool or item is None:
            continue
        if type(item) is int:
            if -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                continue
            return False
        if (type(item) is dict or type(item) is list) and fast_path_applies(item):
            continue
        return False
    return True


def canonicalize_general(value: JsonValue) -> bytes:
    """RFC 8785 followed step by step, for any value; the reference for the fast path.

    Raises CanonicalizationError for anything that is not JSON.
    """
    parts: list[str] = []
    try:
        _write(value, parts)
        return "".join(parts).encode("utf-8")
    except UnicodeEncodeError as exc:  # §3.2.2.2: lone surrogates MUST be rejected
        raise CanonicalizationError("string holds a lone surrogate") from exc
    except RecursionError as exc:
        raise CanonicalizationError("value is nested too deeply or is circular") from exc


def _write(value: object, out: list[str]) -> None:
    # bool before int: True is an int in Python, `true` in JSON (§3.2.2.1 literals).
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, int):
        out.append(_integer(value))
    elif isinstance(value, float):
        out.append(format_number(value))
    elif isinstance(value, Mapping):
        _write_object(value, out)
    elif isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        _write_array(value, out)
    else:
        raise CanonicalizationError(f"{type(value).__name__} is not a JSON value")


def _write_object(value: Mapping[object, object], out: list[str]) -> None:
    members: list[tuple[str, object]] = []
    for key, item in value.items():
        if not isinstance(key, str):
            raise CanonicalizationError(f"object key {key!r} is not a string")
        # §3.2.3: a name is its string value; str() of a str-mixin Enum is its member's name.
        members.append((str.__str__(key), item))
    # §3.2.3: sort by the UTF-16 code units of the raw (unescaped) key. UTF-16BE bytes compare
    # exactly as their code-unit sequence does; a lone surrogate fails this encode, as it must.
    members.sort(key=lambda kv: kv[0].encode("utf-16-be"))
    out.append("{")
    for position, (key, item) in enumerate(members):
        if position:
            out.append(",")
        out.append(_string(key))
        out.append(":")
        _write(item, out)
    out.append("}")


def _write_array(value: Sequence[object], out: list[str]) -> None:
    out.append("[")
    for position, item in enumerate(value):
        if position:
            out.append(",")
        _write(item, out)
    out.append("]")


def _string(text: str) -> str:
    return '"' + text.translate(_ESCAPES) + '"'


def _integer(number: int) -> str:
    # An integer is a JSON number, i.e. an IEEE 754 double (§3.2.2.3); beyond ±(2^53 - 1)
    # ECMAScript would round it, which we refuse (RFC 7493 §2.2) rather than change the value.
    if not -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
        raise CanonicalizationError(f"integer {number} is outside ±(2^53 - 1)")
    return str(int(number))


def format_number(number: float) -> str:
    """ECMAScript Number::toString(number) (ECMA-262 §6.1.6.1.20), as RFC 8785 §3.2.2.3 asks.

    Raises CanonicalizationError for NaN and ±Infinity (RFC 8785 §3.2.2.3).
    """
    if math.isnan(number) or math.isinf(number):
        raise CanonicalizationError(f"{number!r} is not a JSON number")
    if number == 0:
        return "0"  # step 2: +0 and -0 are both "0"
    if number < 0:
        return "-" + format_number(-number)  # step 3
    digits, exponent = _shortest_digits(number)
    return _layout(digits, exponent)


def _shortest_digits(number: float) -> tuple[str, int]:
    """(s, n) of ECMA-262 step 5: s the shortest digit string that round-trips, k = len(s),
    and s x 10^(n - k) == number. Python's repr picks the same s (shortest, then nearest)."""
    mantissa, _, exp = repr(number).partition("e")
    whole, _, fraction = mantissa.partition(".")
    significant = (whole + fraction).lstrip("0")
    point = (int(exp) if exp else 0) - len(fraction) + len(significant)
    return significant.rstrip("0"), point


def _layout(s: str, n: int) -> str:
    # ECMA-262 Number::toString steps 6-10, with k = len(s).
    k = len(s)
    if k <= n <= 21:
        return s + "0" * (n - k)  # step 6: an integer, no exponent
    if 0 < n <= 21:
        return s[:n] + "." + s[n:]  # step 7: a point inside the digits
    if -6 < n <= 0:
        return "0." + "0" * -n + s  # step 8: small, leading zeros
    e = n - 1  # steps 9-10: exponent form, always signed
    sign = "+" if e >= 0 else "-"
    if k == 1:
        return f"{s}e{sign}{abs(e)}"
    return f"{s[0]}.{s[1:]}e{sign}{abs(e)}"
