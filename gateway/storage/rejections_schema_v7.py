"""Migration 7: a job's rejections are keyed by (job_id, line, ordinal), not by their code.

Migration 3 keyed `job_rejections` by (job_id, line, code) and inserted with "ignore on
conflict": a line's second rejection with the same code (given_name and family_name both
empty, email_sha256 and phone_sha256 both not hex) was dropped without a word. Now

    job_rejections  job_id, line, ordinal, subject_id, code, field, message
                    ordinal: the rejection's position (0, 1, ...) among its line's rejections,
                    in the order the planner made them

A line's rejections are all made while its chunk is planned and written with the chunk's
entries and resume point in one transaction (gateway/provisions/jobs.py): a committed line is
never planned again, so its keys never collide. Were a chunk written twice all the same (two
submissions of one key at once), its rows would have the same keys, and the second write adds
nothing: the insert still ignores a conflict, which now only a duplicate can cause.

Existing rows get their ordinals in code order within their line (byte order, COLLATE "C" on
PostgreSQL, as SQLite compares text): the order the download listed them in before.

Frozen once released, like every migration.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final, TypeAlias

from gateway.delivery.outbox import Rejection

__all__ = ["FIRST_KEY", "POSTGRES_V7", "SQLITE_V7", "RejectionKey", "keyed_rows"]

RejectionKey: TypeAlias = tuple[int, int]  # (line, ordinal): where the download is
FIRST_KEY: Final[RejectionKey] = (0, -1)  # before every row: lines count from 1


def keyed_rows(job_id: str, rows: Iterable[Rejection]) -> Iterator[tuple[object, ...]]:
    """The columns of one write's rejections, in order: job_id, line, ordinal, subject_id,
    code, field, message. The ordinal counts the line's rejections before this one."""
    seen: dict[int, int] = {}
    for r in rows:
        ordinal = seen.get(r.line, 0)
        seen[r.line] = ordinal + 1
        yield (job_id, r.line, ordinal, r.subject_id, r.code, r.field, r.message)


SQLITE_V7: Final[tuple[str, ...]] = (
    # SQLite cannot change a primary key: a new table, the rows copied, the old one dropped
    # (https://sqlite.org/lang_altertable.html#otheralter).
    """CREATE TABLE job_rejections_v7 (
        job_id TEXT NOT NULL REFERENCES jobs (job_id),
        line INTEGER NOT NULL,
        ordinal INTEGER NOT NULL CHECK (ordinal >= 0),
        subject_id TEXT,
        code TEXT NOT NULL,
        field TEXT,
        message TEXT NOT NULL,
        PRIMARY KEY (job_id, line, ordinal)) WITHOUT ROWID""",
    """INSERT INTO job_rejections_v7 (job_id, line, ordinal, subject_id, code, field, message)
        SELECT job_id, line, row_number() OVER (PARTITION BY job_id, line ORDER BY code) - 1,
            subject_id, code, field, message
        FROM job_rejections""",
    "DROP TABLE job_rejections",
    "ALTER TABLE job_rejections_v7 RENAME TO job_rejections",
)

POSTGRES_V7: Final[tuple[str, ...]] = (
    "ALTER TABLE job_rejections ADD COLUMN ordinal integer",
    """UPDATE job_rejections AS r SET ordinal = n.ordinal
        FROM (SELECT job_id, line, code,
                row_number() OVER (PARTITION BY job_id, line ORDER BY code COLLATE "C") - 1
                    AS ordinal
            FROM job_rejections) AS n
        WHERE r.job_id = n.job_id AND r.line = n.line AND r.code = n.code""",
    "ALTER TABLE job_rejections ALTER COLUMN ordinal SET NOT NULL",
    """ALTER TABLE job_rejections ADD CONSTRAINT job_rejections_ordinal_check
        CHECK (ordinal >= 0)""",
    "ALTER TABLE job_rejections DROP CONSTRAINT job_rejections_pkey",
    "ALTER TABLE job_rejections ADD PRIMARY KEY (job_id, line, ordinal)",
)
