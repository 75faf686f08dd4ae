"""The spellings an entry's time and retention take (gateway/ledger/entries.py)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.ledger.entries import RecordingMethod, retain_until, utc_text

JST = timezone(timedelta(hours=9))
RFC3339_UTC = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


@pytest.mark.parametrize(
    ("at", "text"),
    [
        (datetime(2026, 11, 24, 12, 0, tzinfo=UTC), "2026-11-24T12:00:00.000000Z"),
        (datetime(2026, 11, 25, 8, 30, 1, 7, tzinfo=JST), "2026-11-24T23:30:01.000007Z"),
        (datetime(2028, 2, 29, 23, 59, 59, 999999, tzinfo=UTC), "2028-02-29T23:59:59.999999Z"),
        (datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC), "0999-01-02T03:04:05.000000Z"),
    ],
)
def test_utc_text_spells_each_instant_once(at: datetime, text: str) -> None:
    assert utc_text(at) == text


# Inside years 2..9998, where every offset's instant still has a UTC date.
@given(
    st.datetimes(datetime(2, 1, 1), datetime(9998, 12, 31), timezones=st.timezones()),
)
def test_utc_text_is_rfc3339_utc_and_reads_back_as_the_same_instant(at: datetime) -> None:
    text = utc_text(at)
    assert RFC3339_UTC.fullmatch(text)
    assert datetime.fromisoformat(text) == at.astimezone(UTC)


@pytest.mark.parametrize(
    ("created", "method", "last", "until"),
    [
        (datetime(2026, 11, 24, 15, tzinfo=UTC), RecordingMethod.SINGLE, None, date(2029, 11, 24)),
        # 24 November 23:30 in Tokyo is 14:30 UTC: the UTC date counts.
        (datetime(2026, 11, 25, 8, tzinfo=JST), RecordingMethod.SINGLE, None, date(2029, 11, 24)),
        (datetime(2028, 2, 29, tzinfo=UTC), RecordingMethod.SINGLE, None, date(2031, 3, 1)),
        (
            datetime(2026, 1, 1, tzinfo=UTC),
            RecordingMethod.COMBINED,
            datetime(2026, 6, 30, tzinfo=UTC),
            date(2029, 6, 30),
        ),
        (
            datetime(2026, 1, 1, tzinfo=UTC),
            RecordingMethod.CONTRACT,
            datetime(2026, 6, 30, tzinfo=UTC),
            date(2027, 6, 30),
        ),
    ],
)
def test_retain_until_follows_the_recording_method(
    created: datetime, method: RecordingMethod, last: datetime | None, until: date
) -> None:
    assert retain_until(created, method, last) == until
