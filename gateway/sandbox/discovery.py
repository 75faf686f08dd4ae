"""Validate JSON bodies against a Google API discovery document's schemas, compiled once.

A discovery document (https://developers.google.com/discovery/v1/reference/apis) describes each
request body as a JSON schema dialect of its own: `type` object / array / string / boolean /
integer / number / any, `$ref` to another named schema, `enum`, `items`, `properties`,
`additionalProperties` and a `format`. Bodies are read with the proto3 JSON mapping
(https://protobuf.dev/programming-guides/json/), which is what Google's front ends apply:

- a field name the message lacks is an error ("Unknown name ... Cannot find field."),
- `null` for a field means "not set"; inside a repeated field it is an error,
- 64-bit integers (`format: int64` / `uint64`) are written as decimal strings, numbers are also
  accepted; 32-bit ones as numbers, decimal strings are also accepted,
- `google-datetime` is an RFC 3339 timestamp, `google-duration` seconds with an `s` suffix,
  `byte` standard or URL-safe base64, padded or not,
- floating point numbers may also be written "NaN", "Infinity" or "-Infinity".

Each schema is compiled into a tree of closures the first time it is asked for, so validating a
body costs one dictionary walk: no per-call interpretation of the schema. The first wrong field
raises `SchemaViolation`, whose `field` names it the way Google's errors do
(`audienceMembers[3].userData.userIdentifiers[0].emailAddress`). Descriptions never echo the
value: a wrong value may well be somebody's email address.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.errors import ConfigError, GatewayError

Check = Callable[[Any], None]
"""A compiled schema: returns None for a valid value, raises SchemaViolation otherwise."""

_INT_RANGES = {
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
_INTEGER_TEXT = re.compile(r"-?[0-9]+")
_FLOAT_WORDS = frozenset({"NaN", "Infinity", "-Infinity"})
_NUMBER_TEXT = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")  # RFC 8259 §6
# RFC 3339 §5.6 date-time; Google accepts up to nanosecond fractions.
_RFC3339 = re.compile(
    r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]"
    r":([0-5][0-9]|60)(\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)
_DURATION = re.compile(r"-?[0-9]+(\.[0-9]{1,9})?s")
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]*={0,2}")


class DiscoveryError(ConfigError):
    """The discovery document is unreadable or uses a construct this validator lacks."""


class SchemaViolation(GatewayError):
    """A body does not match its schema. `field` is the dotted path of the wrong field."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description
        self.parts: list[str | int] = []  # innermost first: containers append as it propagates

    @property
    def field(self) -> str:
        out = ""
        for part in reversed(self.parts):
            if isinstance(part, int):
                out += f"[{part}]"
            else:
                out += f".{part}" if out else part
        return out


class DiscoveryDocument:
    """A loaded discovery document: its methods and its compiled schemas."""

    def __init__(self, document: Mapping[str, Any]) -> None:
        schemas = document.get("schemas")
        if not isinstance(schemas, dict):
            raise DiscoveryError("the discovery document has no 'schemas' object")
        self.document = document
        self._schemas: dict[str, Mapping[str, Any]] = schemas
        self._compiled: dict[str, Check] = {}

    @classmethod
    def load(cls, path: Path) -> DiscoveryDocument:
        """Read a discovery JSON file. Raises DiscoveryError (unreadable or not a document)."""
        try:
            document = json.loads(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise DiscoveryError(f"{path}: cannot read the discovery document: {exc}") from exc
        if not isinstance(document, dict):
            raise DiscoveryError(f"{path}: a discovery document is a JSON object")
        return cls(document)

    def method(self, method_id: str) -> Mapping[str, Any]:
        """The method description with this `id` (e.g. datamanager.audienceMembers.ingest).
        Raises DiscoveryError when the document has no such method."""
        found = _find_method(self.document.get("resources", {}), method_id)
        if found is None:
            raise DiscoveryError(f"the discovery document has no method {method_id!r}")
        return found

    def schema(self, name: str) -> Mapping[str, Any]:
        """The raw schema named `name`. Raises DiscoveryError when there is none."""
        try:
            return self._schemas[name]
        except KeyError:
            raise DiscoveryError(f"the discovery document has no schema {name!r}") from None

    def enum(self, schema: str, prop: str) -> tuple[str, ...]:
        """The enum values of one string property. Raises DiscoveryError if it has none."""
        values = self.schema(schema).get("properties", {}).get(prop, {}).get("enum")
        if not isinstance(values, list):
            raise DiscoveryError(f"{schema}.{prop} is not an enum")
        return tuple(values)

    def validator(self, name: str) -> Check:
        """The compiled check for schema `name`, compiled on first use and then cached.
        Raises DiscoveryError for an unknown schema or an unsupported construct."""
        compiled = self._compiled.get(name)
        if compiled is not None:
            return compiled
        raw = self.schema(name)
        # A schema may refer to itself through its properties: later look-ups of `name` go
        # through this trampoline until the real check exists.
        slot: list[Check] = []
        self._compiled[name] = lambda value: slot[0](value)
        real = self._compile(raw)
        slot.append(real)
        self._compiled[name] = real
        return real

    def _compile(self, schema: Mapping[str, Any]) -> Check:
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self.validator(ref)
        kind = schema.get("type")
        if kind == "object":
            return self._object(schema)
        if kind == "array":
            return _array(self._compile(schema.get("items", {"type": "any"})))
        if kind == "string":
            return _string(schema)
        if kind == "integer":
            return _integer(schema.get("format", "int32"))
        if kind == "number":
            return _number
        if kind == "boolean":
            return _boolean
        if kind == "any":
            return _anything
        raise DiscoveryError(f"unsupported schema type {kind!r}")

    def _object(self, schema: Mapping[str, Any]) -> Check:
        props: Mapping[str, Mapping[str, Any]] = schema.get("properties", {})
        plain = frozenset(k for k, v in props.items() if _is_plain_string(v))
        checks = {k: self._compile(v) for k, v in props.items() if k not in plain}
        extra_schema = schema.get("additionalProperties")
        extra = self._compile(extra_schema) if isinstance(extra_schema, dict) else None
        return _object(plain, checks, extra)


def _find_method(resources: Mapping[str, Any], method_id: str) -> Mapping[str, Any] | None:
    for resource in resources.values():
        for method in resource.get("methods", {}).values():
            if method.get("id") == method_id:
                return method  # type: ignore[no-any-return]
        found = _find_method(resource.get("resources", {}), method_id)
        if found is not None:
            return found
    return None


def _is_plain_string(schema: Mapping[str, Any]) -> bool:
    """A string with nothing more to check: the object loop tests its type inline (hot path)."""
    return schema.get("type") == "string" and not ({"enum", "format", "$ref"} & schema.keys())


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _object(plain: frozenset[str], checks: dict[str, Check], extra: Check | None) -> Check:
    def check(value: Any) -> None:
        if type(value) is not dict:
            raise SchemaViolation(f"expected an object, got {_json_type(value)}")
        for key, item in value.items():
            if key in plain:
                if type(item) is str or item is None:
                    continue
                exc = SchemaViolation(f"expected a string, got {_json_type(item)}")
                exc.parts.append(key)
                raise exc
            sub = checks.get(key, extra)
            if sub is None:
                exc = SchemaViolation(f'Unknown name "{key}": Cannot find field.')
                exc.parts.append(key)
                raise exc
            if item is None:  # proto3 JSON: null means the field is not set
                continue
            try:
                sub(item)
            except SchemaViolation as exc:
                exc.parts.append(key)
                raise

    return check


def _array(item_check: Check) -> Check:
    def check(value: Any) -> None:
        if type(value) is not list:
            raise SchemaViolation(f"expected an array, got {_json_type(value)}")
        for index, item in enumerate(value):
            try:
                item_check(item)
            except SchemaViolation as exc:
                exc.parts.append(index)
                raise

    return check


def _string(schema: Mapping[str, Any]) -> Check:
    enum = schema.get("enum")
    fmt = schema.get("format")
    if isinstance(enum, list):
        return _enum(frozenset(enum))
    if fmt in _INT_RANGES:
        return _integer(fmt)
    pattern = {"google-datetime": _RFC3339, "google-duration": _DURATION, "byte": _BASE64}.get(
        fmt or ""
    )
    if pattern is None:
        return _plain_string
    return _patterned(pattern, str(fmt))


def _plain_string(value: Any) -> None:
    if type(value) is not str:
        raise SchemaViolation(f"expected a string, got {_json_type(value)}")


def _enum(allowed: frozenset[str]) -> Check:
    listed = ", ".join(sorted(allowed))

    def check(value: Any) -> None:
        if type(value) is not str or value not in allowed:
            raise SchemaViolation(f"Invalid value: must be one of {listed}")

    return check


def _patterned(pattern: re.Pattern[str], fmt: str) -> Check:
    def check(value: Any) -> None:
        if type(value) is not str:
            raise SchemaViolation(f"expected a string ({fmt}), got {_json_type(value)}")
        if pattern.fullmatch(value) is None or (fmt == "byte" and not _base64_length_ok(value)):
            raise SchemaViolation(f"Invalid value: not a valid {fmt} string")

    return check


def _base64_length_ok(value: str) -> bool:
    # Unpadded base64 never leaves a single character over; padded base64 is whole quads.
    return len(value) % 4 != 1 and ("=" not in value or len(value) % 4 == 0)


def _integer(fmt: str) -> Check:
    low, high = _INT_RANGES.get(fmt, _INT_RANGES["int64"])

    def check(value: Any) -> None:
        kind = type(value)
        if kind is str and _INTEGER_TEXT.fullmatch(value):
            number = int(value)
        elif kind is int:
            number = value
        elif kind is float and value.is_integer():
            number = int(value)
        else:
            raise SchemaViolation(f"Invalid value: expected an integer ({fmt})")
        if not low <= number <= high:
            raise SchemaViolation(f"Invalid value: out of range for {fmt}")

    return check


def _number(value: Any) -> None:
    kind = type(value)
    if kind is int or kind is float:
        return
    if kind is str and (value in _FLOAT_WORDS or _NUMBER_TEXT.fullmatch(value)):
        return
    raise SchemaViolation(f"Invalid value: expected a number, got {_json_type(value)}")


def _boolean(value: Any) -> None:
    if type(value) is not bool:
        raise SchemaViolation(f"expected a boolean, got {_json_type(value)}")


def _anything(value: Any) -> None:
    return None
