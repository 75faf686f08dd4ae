"""check_summary's refusals: what they may name, and that every malformed body is refused.

A refusal's problems go to the recipient and, as reasons, into the append-only log, so a
pointer may carry only keys the schema, the gateway or the summary's own valid dimensions
declare: any other key (an email, a person's name, a member number) is counted, never named.
null is a value, never "absent and fine". A table is at most MAX_CELLS cells.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.adapters import SummaryRefused
from gateway.adapters.attribute_export import (
    MAX_CELLS,
    MAX_DIMENSIONS,
    Problem,
    Summary,
    check_summary,
)
from gateway.provisions.summaries import refusal_reasons

IDENTIFIERS = ("member_id", "email")
EMAIL = "hanako.sato@example.jp"
UNDECLARED = "undeclared key(s), not named: a summary holds no other key"


def refused(body: object) -> tuple[Problem, ...]:
    with pytest.raises(SummaryRefused) as raised:
        check_summary(body, 10, IDENTIFIERS)
    problems = raised.value.problems
    assert problems, "a refusal lists at least one problem"
    assert ("", "is not a summary") not in problems, "every refusal names its own problem"
    return tuple(problems)


def table(*cells: dict[str, Any], dimensions: object = ("age_band",)) -> dict[str, Any]:
    dims = list(dimensions) if isinstance(dimensions, tuple) else dimensions
    return {"upload_id": "up_1", "dimensions": dims, "cells": list(cells)}


OK_CELL = {"values": {"age_band": "30-39"}, "count": 12}


# --- what a refusal may name (QA: a pointer quoted an email into the log)


def test_with_no_usable_dimensions_no_value_key_is_named() -> None:
    # The QA repro: dimensions "x", a cell keyed by an email address.
    body = table({"values": {EMAIL: 1}, "count": 12}, dimensions="x")
    problems = refused(body)
    assert problems == (("/dimensions", f"must be a list of at most {MAX_DIMENSIONS} names"),)
    for dimensions in (None, [], ["Not A Name"], ["age_band", "age_band"]):
        assert "hanako" not in json.dumps(refused({**body, "dimensions": dimensions}))


def test_undeclared_keys_are_counted_not_named() -> None:
    # The QA repro: name-shaped keys beside a cell's values and count.
    cell = {**OK_CELL, "Hanako_Sato": 1, "M-000123": {}}
    assert refused(table(cell)) == (("/cells/0", f"2 {UNDECLARED}"),)
    values = {"values": {"age_band": "30-39", EMAIL: "f", "Hanako_Sato": "x"}, "count": 12}
    assert refused(table(values)) == (
        ("/cells/0/values", "2 undeclared key(s), not named: not one of the dimensions"),
    )
    assert refused({**table(OK_CELL), "Hanako_Sato": [1]}) == (("", f"1 {UNDECLARED}"),)


def test_names_the_schema_or_the_gateway_declares_are_quoted() -> None:
    values = {"values": {"age_band": "30-39", "email": "x"}, "count": 12}
    assert refused(table(values)) == (("/cells/0/values/email", "not one of the dimensions"),)
    assert refused(table({**OK_CELL, "member_id": "m1"})) == (
        ("/cells/0/member_id", "a summary holds no other key"),
    )
    missing = {"values": {}, "count": 12}
    assert refused(table(missing)) == (("/cells/0/values/age_band", "missing dimension"),)


def test_a_dimension_is_never_quoted_in_a_detail() -> None:
    cell = {"values": {"hanako_sato": "x"}, "count": 12}
    body = table(cell, dimensions=["hanako_sato", "hanako_sato", "hanako_sha256"])
    problems = refused(body)
    assert problems == (
        ("/dimensions/1", "repeats /dimensions/0"),
        ("/dimensions/2", "names an identifier of one person: not a dimension"),
    )
    digest = "ab" * 16  # a lowercase name and a digest: no dimension
    assert refused(table(OK_CELL, dimensions=["a" + digest]))[0] == (
        "/dimensions/0",
        "looks like one person's identifier",
    )


def test_an_upload_id_shaped_like_a_person_is_refused_with_the_rest() -> None:
    problems = refused({**table({**OK_CELL, "count": 3}), "upload_id": EMAIL})
    assert ("/upload_id", "looks like one person's identifier") in problems
    assert ("/cells/0/count", "below the minimum cell count 10") in problems
    assert EMAIL not in json.dumps(problems)


# --- null is a value, never "absent and fine" (QA: 500, silent drops, "not valid JSON")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({**table(OK_CELL), "dimensions": None}, ("/dimensions", "must be a list")),
        ({**table(OK_CELL), "cells": None}, ("/cells", "must be a non-empty list of cells")),
        ({**table(OK_CELL), "upload_id": None}, ("/upload_id", "must be a printable string")),
        (table({"values": {"age_band": "40-49"}, "count": None}), ("/cells/0/count", "integer")),
        (table({"values": None, "count": 3000}), ("/cells/0/values", "must be an object")),
        (table({"values": {"age_band": None}, "count": 12}), ("/cells/0/values/age_band", "")),
        (table(None), ("/cells/0", "must be an object with values and count")),  # type: ignore[arg-type]
    ],
)
def test_null_is_refused_where_it_stands(body: dict[str, Any], expected: tuple[str, str]) -> None:
    problems = refused(body)
    pointer, detail = expected
    assert any(p == pointer and detail in d for p, d in problems), problems


def test_a_null_cell_is_not_dropped_from_a_stored_summary() -> None:
    # The QA repro: one good cell, a null count, null values; was stored with "cells": 1.
    body = table(
        OK_CELL,
        {"values": {"age_band": "40-49"}, "count": None},
        {"values": None, "count": 3000},
    )
    assert refused(body) == (
        ("/cells/1/count", "must be an integer"),
        ("/cells/2/values", "must be an object of dimension -> value"),
    )
    # Every cell null: refused as such (it was a ValueError, answered "not valid JSON").
    only_nulls = table({"values": {"age_band": "40-49"}, "count": None})
    assert refused(only_nulls) == (("/cells/0/count", "must be an integer"),)


# --- a statistical table has a bounded size (QA: 200,000 cells held the loop for 3 s)


def test_a_table_of_max_cells_is_accepted() -> None:
    cells = [{"values": {"n": str(i)}, "count": 10} for i in range(MAX_CELLS)]
    summary = check_summary(table(*cells, dimensions=["n"]), 10, IDENTIFIERS)
    assert isinstance(summary, Summary)
    assert len(summary.cells) == MAX_CELLS


def test_more_cells_are_refused_before_any_is_read() -> None:
    cells = [{"values": {EMAIL: "x"}, "count": None}] * (20 * MAX_CELLS)
    started = time.perf_counter()
    problems = refused(table(*cells))
    assert time.perf_counter() - started < 0.5  # not one cell was checked (a cell is ~20 us)
    assert problems == (
        ("/cells", f"at most {MAX_CELLS} cells in a summary, not {20 * MAX_CELLS}"),
    )


def test_more_dimensions_are_refused() -> None:
    dims = [f"d{i}" for i in range(MAX_DIMENSIONS + 1)]
    values = {"values": dict.fromkeys(dims, "x"), "count": 12}
    assert refused(table(values, dimensions=dims)) == (
        ("/dimensions", f"must be a list of at most {MAX_DIMENSIONS} names"),
    )


# --- properties

MARK = "Zq"  # every caller key below starts with it: no problem may carry it
caller_keys = st.one_of(
    st.just(EMAIL),
    st.just("Hanako_Sato"),
    st.text(min_size=0, max_size=12),
).map(lambda text: MARK + text)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def tampered(draw: st.DrawFn) -> dict[str, Any]:
    """A valid-looking summary with caller keys slipped in, and maybe its dimensions broken."""
    dims = ["age_band", "gender"]
    cells = [
        {"values": {"age_band": f"{band}0-{band}9", "gender": "f"}, "count": 10 + band}
        for band in range(draw(st.integers(1, 4)))
    ]
    body: dict[str, Any] = {"upload_id": "up_1", "dimensions": dims, "cells": cells}
    for _ in range(draw(st.integers(1, 4))):
        cell = draw(st.sampled_from(cells))
        target: dict[str, Any] = draw(st.sampled_from([body, cell, cell["values"]]))
        target[draw(caller_keys)] = draw(json_values)
    if draw(st.booleans()):
        body["dimensions"] = draw(st.sampled_from([None, "x", [], ["Age"], dims + dims, 3]))
    return body


@given(tampered())
def test_no_caller_key_is_ever_named(body: dict[str, Any]) -> None:
    problems = refused(body)
    assert MARK not in json.dumps(problems)
    assert MARK not in json.dumps(refusal_reasons(problems))  # what the log keeps


def verdict(body: object) -> Summary | SummaryRefused:
    try:
        return check_summary(body, 10, IDENTIFIERS)
    except SummaryRefused as exc:
        return exc


top_keys = st.sampled_from(["upload_id", "dimensions", "cells"])


@given(json_values | st.dictionaries(top_keys, json_values))
def test_any_json_is_a_summary_or_a_refusal(body: object) -> None:
    result = verdict(body)  # nothing else is raised: no AssertionError, no ValidationError
    if isinstance(result, Summary):
        assert result.cells
    else:
        assert result.problems
        assert ("", "is not a summary") not in result.problems


@given(st.integers(1, 4), st.data())
def test_null_anywhere_is_refused_at_its_pointer(n: int, data: st.DataObject) -> None:
    cells: list[dict[str, Any]] = [
        {"values": {"age_band": f"{i}0-{i}9"}, "count": 10 + i} for i in range(n)
    ]
    body: dict[str, Any] = {"upload_id": "up_1", "dimensions": ["age_band"], "cells": cells}
    i = data.draw(st.integers(0, n - 1))
    slots: dict[str, tuple[dict[str, Any], str]] = {
        "/upload_id": (body, "upload_id"),
        "/dimensions": (body, "dimensions"),
        "/cells": (body, "cells"),
        f"/cells/{i}/count": (cells[i], "count"),
        f"/cells/{i}/values": (cells[i], "values"),
        f"/cells/{i}/values/age_band": (cells[i]["values"], "age_band"),
    }
    pointer = data.draw(st.sampled_from(sorted(slots)))
    holder, key = slots[pointer]
    holder[key] = None
    assert pointer in [p for p, _ in refused(body)]
