"""The SQLite store's consent tables: statements, row decoding and the state of many people
read in one snapshot."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any, Final

from gateway.models import ConsentEvent, Discontinuance, SubjectState
from gateway.storage import ConsentRow, states_of
from gateway.storage.sqlite_connect import transaction
from gateway.storage.sqlite_time import from_micros, to_micros

__all__ = [
    "DISCONTINUANCE",
    "EVENT",
    "HISTORY",
    "event",
    "insert_rows",
    "states",
    "stopped",
]

# SQL is spelled out in full (no string building), so no statement can carry data.
EVENT = """INSERT INTO consent_events (subject_id, purpose, action, effective_at,
    notice_version, channel, foreign_disclosure_version, recorded_at, recorded_by)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"""
HISTORY = """SELECT seq, subject_id, purpose, action, effective_at, notice_version, channel,
    foreign_disclosure_version, recorded_at, recorded_by
    FROM consent_events WHERE subject_id = ? ORDER BY seq"""
# Every event of the asked subjects in index order (no sort step): the last row of each
# (subject, purpose) is its current state, latest effective_at then latest seq. The ids travel
# as one JSON array, so a batch of any size is one statement with no variable limit. Measured
# with 5,000 ids over 300k events: a third faster than a row_number() window.
_EVENTS_IN_INDEX_ORDER = """SELECT seq, subject_id, purpose, action, effective_at,
    notice_version, channel, foreign_disclosure_version, recorded_at, recorded_by
    FROM consent_events WHERE subject_id IN (SELECT value FROM json_each(?))
    ORDER BY subject_id, purpose, effective_at, seq"""
DISCONTINUANCE = """INSERT INTO discontinuances
    (subject_id, partners, reason, requested_at, recorded_by) VALUES (?, ?, ?, ?, ?)"""
_DISCONTINUANCES = """SELECT seq, subject_id, partners, reason, requested_at, recorded_by
    FROM discontinuances WHERE subject_id IN (SELECT value FROM json_each(?)) ORDER BY seq"""

# Of the asked subjects, those whose current event for a purpose (latest effective_at, then
# latest seq: the order of _EVENTS_IN_INDEX_ORDER) is a withdrawal. One backward step in the
# index per subject and nothing built for the others: the delivery worker asks this after
# every delivered request, and almost nobody in it has withdrawn.
_WITHDRAWN_AMONG = """SELECT s.value FROM json_each(?) AS s
    WHERE (SELECT action FROM consent_events
        WHERE subject_id = s.value AND purpose = ?
        ORDER BY effective_at DESC, seq DESC LIMIT 1) = 'withdraw'"""
# Of the asked subjects, those with a discontinuance for every partner or naming this one.
_DISCONTINUED_AMONG = """SELECT DISTINCT subject_id FROM discontinuances
    WHERE subject_id IN (SELECT value FROM json_each(?))
    AND (partners IS NULL OR EXISTS (SELECT 1 FROM json_each(partners) WHERE value = ?))"""

# HISTORY and _EVENTS_IN_INDEX_ORDER select ConsentEvent's fields, in the model's order.
_EVENT_COLUMNS: Final = tuple(ConsentEvent.model_fields)


def event(row: Sequence[Any], instant: Callable[[int], datetime] = from_micros) -> ConsentEvent:
    """A consent_events row as its model. `model_validate` of a dict runs wholly in pydantic's
    core: 2.4 µs an event against 4.0 for keyword construction (measured)."""
    values = dict(zip(_EVENT_COLUMNS, row, strict=True))
    values["effective_at"], values["recorded_at"] = instant(row[4]), instant(row[8])
    return ConsentEvent.model_validate(values)


def _discontinuance(row: Sequence[Any]) -> Discontinuance:
    return Discontinuance(
        seq=row[0],
        subject_id=row[1],
        partners=None if row[2] is None else tuple(json.loads(row[2])),
        reason=row[3],
        requested_at=from_micros(row[4]),
        recorded_by=row[5],
    )


def insert_rows(
    conn: sqlite3.Connection, rows: Iterable[ConsentRow], recorded_at: int, recorded_by: str
) -> None:
    params = (
        (s, p, a, to_micros(at), nv, ch, fdv, recorded_at, recorded_by)
        for s, p, a, at, nv, ch, fdv in rows
    )
    with transaction(conn):
        conn.executemany(EVENT, params)


def states(conn: sqlite3.Connection, ids: list[str]) -> dict[str, SubjectState]:
    """Each id's current consents and discontinuances, from one snapshot."""
    current: dict[tuple[str, str], Any] = {}
    stops: dict[str, list[Discontinuance]] = {subject: [] for subject in ids}
    ids_json = json.dumps(ids)
    with transaction(conn, "DEFERRED"):  # one snapshot for both reads
        for row in conn.execute(_EVENTS_IN_INDEX_ORDER, (ids_json,)):
            current[row[1], row[2]] = row  # later rows win: see the statement
        for row in conn.execute(_DISCONTINUANCES, (ids_json,)):
            stops[row[1]].append(_discontinuance(row))
    # A batch's events mostly share their instants (one import's recorded_at, a campaign's
    # effective_at): each distinct one is made once.
    instant = lru_cache(maxsize=4096)(from_micros)
    by_subject: dict[str, dict[str, ConsentEvent]] = {subject: {} for subject in ids}
    for (subject, purpose), row in current.items():
        by_subject[subject][purpose] = event(row, instant)
    return states_of(ids, by_subject, stops)


def stopped(
    conn: sqlite3.Connection, ids: list[str], purpose: str, partner_id: str
) -> dict[str, str]:
    """Of `ids`, who now may not be provided to `partner_id` for `purpose`: "consent_withdrawn"
    or "discontinuance" (which wins), from one snapshot; nobody else is in the answer."""
    ids_json = json.dumps(ids)
    found: dict[str, str] = {}
    with transaction(conn, "DEFERRED"):  # one snapshot for both reads
        for (subject,) in conn.execute(_WITHDRAWN_AMONG, (ids_json, purpose)):
            found[subject] = "consent_withdrawn"
        for (subject,) in conn.execute(_DISCONTINUED_AMONG, (ids_json, partner_id)):
            found[subject] = "discontinuance"
    return found
