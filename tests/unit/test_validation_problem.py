"""A pydantic ValidationError as an RFC 9457 problem (gateway/web/problems.validation_problem)."""

from __future__ import annotations

from typing import Literal

import pytest
from pydantic import BaseModel, ValidationError, field_validator

from gateway.errors import BadRequest, ValidationFailed
from gateway.web.problems import validation_problem


class _Order(BaseModel):
    amount: float

    @field_validator("amount")
    @classmethod
    def _finite(cls, value: float) -> float:
        if value != value:
            raise ValueError("must be a finite number")
        return value


def _problem(raw: str) -> ValidationFailed | BadRequest:
    with pytest.raises(ValidationError) as caught:
        _Order.model_validate_json(raw)
    problem = validation_problem(caught.value, ("order",))
    assert isinstance(problem, ValidationFailed | BadRequest)
    return problem


def test_a_custom_message_reads_without_pydantics_prefix() -> None:
    problem = _problem('{"amount": NaN}')
    assert [(e.pointer, e.detail) for e in problem.errors] == [
        ("/order/amount", "must be a finite number")
    ]


def test_broken_json_is_a_bad_request() -> None:
    assert isinstance(_problem('{"amount": '), BadRequest)


class _Stop(BaseModel):
    partners: list[str] | Literal["all"]


def test_a_union_is_one_pointer_at_its_field_not_one_per_member() -> None:
    """Pydantic locates each union member's failure under a tag ("literal['all']"): not a
    field of the body, so no part of a JSON pointer (RFC 6901)."""
    with pytest.raises(ValidationError) as caught:
        _Stop.model_validate_json('{"partners": "ALL"}')
    problem = validation_problem(caught.value)
    assert [e.pointer for e in problem.errors] == ["/partners"]
    assert problem.errors[0].detail == "Input should be a valid array; or Input should be 'all'"
