"""Migration 6: on SQLite, new subject index rows are staged in append order, then merged.

ledger_subjects is keyed by (subject_id, idx): each append's rows land on as many random
b-tree pages as it has entries, and SQLite's WAL logs whole 4 KiB pages, so a 500-entry
append wrote ~1.6 MiB for that index alone (2.75 KiB of the 4.24 KiB written per entry at
200,000 entries). Appends now add their rows to `ledger_subjects_recent`, keyed by idx (one
growing edge, a few pages per append); the append that crosses a multiple of 16,384 entries
moves them all into ledger_subjects in key order, writing each touched page once (see
gateway/storage/sqlite_ledger.py). Every idx in ledger_subjects stays below every idx in
ledger_subjects_recent.

    ledger_subjects_recent  idx, subject_id   never updated; a row is deleted only once it is
                            in ledger_subjects (the merge) or its entry's chunk is gone (purge)

PostgreSQL logs index inserts as small records, not pages: its migration 6 is empty.
"""

from __future__ import annotations

from typing import Final

SQLITE_V6: Final[tuple[str, ...]] = (
    """CREATE TABLE ledger_subjects_recent (
        idx INTEGER PRIMARY KEY,
        subject_id TEXT NOT NULL)""",
    """CREATE TRIGGER ledger_subjects_recent_no_update BEFORE UPDATE ON ledger_subjects_recent
        BEGIN SELECT RAISE(ABORT, 'ledger_subjects_recent is append-only'); END""",
    """CREATE TRIGGER ledger_subjects_recent_no_early_delete
        BEFORE DELETE ON ledger_subjects_recent
        WHEN NOT EXISTS (SELECT 1 FROM ledger_subjects
                WHERE subject_id = OLD.subject_id AND idx = OLD.idx)
            AND EXISTS (SELECT 1 FROM ledger_chunks WHERE first_idx <= OLD.idx
                AND first_idx > OLD.idx - 256 AND first_idx + count > OLD.idx)
        BEGIN SELECT RAISE(ABORT,
            'ledger_subjects_recent: retention period of its entry not over'); END""",
)

POSTGRES_V6: Final[tuple[str, ...]] = ()
