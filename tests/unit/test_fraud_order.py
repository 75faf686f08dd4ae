"""The fraud-check request body (gateway.web.routes_fraud.FraudCheckBody): what an order may
hold. Fields that leave in clear are checked for what they claim to be, so that an email or a
phone number cannot leave unhashed in their place; messages never echo a value."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.web.routes_fraud import FraudCheckBody

ORDER = {"order_id": "o-1", "amount": 12800, "currency": "JPY"}


def parse(**fields: Any) -> dict[str, Any]:
    """The order as validated (JSON in, as the route reads it)."""
    body = {"partner": "p", "subject_id": "cust-1", "order": {**ORDER, **fields}}
    model = FraudCheckBody.model_validate_json(json.dumps(body))
    return dict(model.order)


def errors(**fields: Any) -> list[tuple[tuple[int | str, ...], str]]:
    """(location, message) of each error; fails if the order is accepted."""
    body = {"partner": "p", "subject_id": "cust-1", "order": {**ORDER, **fields}}
    raw = json.dumps(body)  # NaN and Infinity are written as the JSON parser accepts them
    with pytest.raises(ValidationError) as caught:
        FraudCheckBody.model_validate_json(raw)
    found = caught.value.errors(include_url=False, include_input=False)
    for e in found:
        for value in fields.values():
            if isinstance(value, str) and value:
                assert value not in e["msg"], e
    return [(tuple(e["loc"]), e["msg"]) for e in found]


@pytest.mark.parametrize(
    ("given", "sent"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:DB8:0:0:0:0:0:7", "2001:db8::7"),  # RFC 5952: lower case, zeros compressed
        ("2001:db8::7", "2001:db8::7"),
        ("::ffff:203.0.113.7", "203.0.113.7"),  # IPv4-mapped: the IPv4 address
        ("::1", "::1"),
    ],
)
def test_an_ip_address_is_sent_in_its_canonical_form(given: str, sent: str) -> None:
    assert parse(ip_address=given)["ip_address"] == sent


@pytest.mark.parametrize(
    "value",
    [
        "dana.m@example.com",
        "090-1234-5678",
        "203.0.113",
        "203.0.113.256",
        "010.0.0.1",  # leading zeros: octal to some parsers, refused by Python's
        " 203.0.113.7",
        "fe80::1%dana.m@example.com",  # a zone is free text
        "fe80::1%eth0",
    ],
)
def test_an_ip_address_must_be_one(value: str) -> None:
    [(loc, message)] = errors(ip_address=value)
    assert loc == ("order", "ip_address")
    assert "IP" in message


@pytest.mark.parametrize(
    "value",
    ["100-0001", "1000001", "12345", "12345-6789", "SW1A 1AA", "K1A 0B1", "1234 AB", "D02 X285"],
)
def test_postal_codes_of_many_countries_pass_unchanged(value: str) -> None:
    assert parse(shipping_postal_code=value)["shipping_postal_code"] == value


@pytest.mark.parametrize(
    "value",
    [
        "dana.m@example.com",
        "d@e.jp",
        "090-1234-5678",  # a phone number with hyphens: 13 characters
        "09012345678",  # without: 11 characters
        "0312345678",  # a 10-digit landline number fits in 10 characters, not in 9 digits
        "Dana",  # no digit: a name, not a postal code
        "-100-0001",
        "100-0001 ",
        "100_0001",
        "１００-０００１",  # full-width digits: not ASCII
    ],
)
def test_a_postal_code_must_look_like_one(value: str) -> None:
    [(loc, message)] = errors(shipping_postal_code=value)
    assert loc == ("order", "shipping_postal_code")
    assert message.startswith("must be a postal code")


@pytest.mark.parametrize("field", ["ip_address", "shipping_postal_code"])
def test_empty_or_null_still_means_absent(field: str) -> None:
    assert parse(**{field: ""})[field] == ""
    assert parse(**{field: None})[field] is None


@pytest.mark.parametrize("amount", [math.nan, math.inf, -math.inf])
def test_every_non_finite_amount_gets_the_same_message(amount: float) -> None:
    assert errors(amount=amount) == [(("order", "amount"), "Input should be a finite number")]


def test_custom_messages_carry_no_value_error_prefix() -> None:
    assert errors(amount="12800") == [(("order", "amount"), "must be a JSON number")]
    assert errors(amount=True) == [(("order", "amount"), "must be a JSON number")]
    [(loc, message)] = errors(**{"dana@example.com": 1})
    assert loc == ("order",)
    assert message == "other field names must be letters, digits and _ (max 63)"


def test_currency_is_three_capital_letters_not_a_checked_iso_code() -> None:
    # Documented (docs/fraud-checks.md): the shape is checked, ISO 4217's list is not.
    assert parse(currency="XCG")["currency"] == "XCG"
    assert parse(currency="ZZZ")["currency"] == "ZZZ"
    for bad in ("yen", "JP", "JPYN", "jpy"):
        [(loc, _)] = errors(currency=bad)
        assert loc == ("order", "currency")
