"""The log verifier catches each way the issue names of tampering with a stored log."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from gateway.contracts import load_contract
from gateway.ledger.checkpoint import checkpoint_body, sign_note, verifier_key
from gateway.ledger.entries import Outcome, RecordingMethod, provision_entry, to_record, utc_text
from gateway.ledger.store import StoredCheckpoint, StoredLeaf
from gateway.ledger.tree import leaf_hash, root_from_leaves
from gateway.ledger.verify import (
    STAMP_SLACK,
    Report,
    Verifier,
    earliest_lawful_purge,
    verify_log,
)
from gateway.models import LegalBasis, SubjectState
from gateway.policy import ProvisionItem, decide
from tests.integration.conftest import REPO

ORIGIN = "test.example/log"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
VKEY = verifier_key(ORIGIN, KEY.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
NOW = datetime(2026, 11, 24, tzinfo=UTC)


def _leaves(n: int) -> list[StoredLeaf]:
    out = []
    for i in range(n):
        leaf = json.dumps({"entry": i, "subject": f"m-{i}"}, sort_keys=True).encode()
        out.append(StoredLeaf(index=i, leaf_hash=leaf_hash(leaf), leaf=leaf))
    return out


def _checkpoint(
    leaves: list[StoredLeaf], size: int, key: Ed25519PrivateKey = KEY
) -> StoredCheckpoint:
    root = root_from_leaves([lf.leaf_hash for lf in leaves[:size]])
    note = sign_note(checkpoint_body(ORIGIN, size, root), ORIGIN, key)
    return StoredCheckpoint(size=size, root=root, note=note, created_at=NOW)


def _verify(leaves: list[StoredLeaf], checkpoints: list[StoredCheckpoint]) -> str | None:
    report = verify_log(leaves, checkpoints, vkeys=[VKEY], origin=ORIGIN)
    return str(report.failure) if report.failure else None


LEAVES = _leaves(40)
CHECKPOINTS = [_checkpoint(LEAVES, s) for s in (0, 1, 7, 16, 40)]
CONTRACT = load_contract(REPO / "partners" / "google-customer-match.toml", NOW.date())
DECISION = decide(
    ProvisionItem(
        subject_id="m-1", purpose="ad_customer_match", legal_basis=LegalBasis.CONSENT,
        fields=("email",),
    ),
    CONTRACT,
    SubjectState(subject_id="m-1"),
    NOW,
)  # fmt: skip


def test_an_intact_log_verifies() -> None:
    report = verify_log(LEAVES, CHECKPOINTS, vkeys=[VKEY], origin=ORIGIN)
    assert report.ok
    assert (report.entries, report.checkpoints, report.purged) == (40, 5, 0)


def test_a_changed_byte_names_the_entry() -> None:
    leaves = list(LEAVES)
    bad = bytearray(leaves[12].leaf or b"")
    bad[3] ^= 0x01
    leaves[12] = dataclasses.replace(leaves[12], leaf=bytes(bad))
    assert _verify(leaves, CHECKPOINTS) == "entry 12: content does not match its leaf hash"


def test_a_changed_entry_with_a_recomputed_hash_fails_the_next_checkpoint() -> None:
    leaves = list(LEAVES)
    forged = b'{"entry": 20, "subject": "someone-else"}'
    leaves[20] = StoredLeaf(index=20, leaf_hash=leaf_hash(forged), leaf=forged)
    assert _verify(leaves, CHECKPOINTS) == (
        "checkpoint 40: root does not match the entries: the log was altered"
    )


def test_a_deleted_row_is_a_gap() -> None:
    leaves = LEAVES[:5] + LEAVES[6:]
    assert _verify(leaves, CHECKPOINTS) == "entry 5: missing: the next stored entry is 6"


def test_a_reordered_pair_is_caught() -> None:
    leaves = list(LEAVES)
    a, b = leaves[3], leaves[4]
    leaves[3] = dataclasses.replace(b, index=3)
    leaves[4] = dataclasses.replace(a, index=4)
    assert _verify(leaves, CHECKPOINTS) == (
        "checkpoint 7: root does not match the entries: the log was altered"
    )


def test_a_forged_checkpoint_is_caught() -> None:
    other = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    forged = _checkpoint(LEAVES, 16, key=other)
    failure = _verify(LEAVES, [*CHECKPOINTS[:3], forged])
    assert failure is not None
    assert failure.startswith("checkpoint 16: signed note does not verify")


def test_a_stored_root_that_differs_from_its_note_is_caught() -> None:
    swapped = dataclasses.replace(CHECKPOINTS[2], root=CHECKPOINTS[3].root)
    assert _verify(LEAVES, [swapped]) == (
        "checkpoint 7: stored size or root differs from the signed note"
    )


def test_a_truncated_log_is_caught() -> None:
    assert (
        _verify(LEAVES[:30], CHECKPOINTS) == "checkpoint 40: covers 40 entries but the log has 30"
    )


@pytest.mark.parametrize("purged", [[0], [0, 1, 2, 39], list(range(40))])
def test_purged_content_keeps_the_log_verifiable(purged: list[int]) -> None:
    leaves = [dataclasses.replace(lf, leaf=None) if lf.index in purged else lf for lf in LEAVES]
    report = verify_log(leaves, CHECKPOINTS, vkeys=[VKEY], origin=ORIGIN)
    assert report.ok
    assert report.purged == len(purged)
    assert report.purged_undated == len(purged)  # no date to check against: not claimed


# purges dated by the entries around them (docs/ledger.md §5.2)


def _stamped(times: list[datetime]) -> list[StoredLeaf]:
    """Leaves that carry a `time`, as log entries do."""
    out = []
    for i, at in enumerate(times):
        leaf = json.dumps({"entry": i, "time": utc_text(at)}, sort_keys=True).encode()
        out.append(StoredLeaf(index=i, leaf_hash=leaf_hash(leaf), leaf=leaf))
    return out


def _purge(leaves: list[StoredLeaf], gone: set[int]) -> list[StoredLeaf]:
    return [dataclasses.replace(lf, leaf=None) if lf.index in gone else lf for lf in leaves]


T = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
STAMPED = _stamped([T] * 24)
STAMPED_CPS = [_checkpoint(STAMPED, s) for s in (8, 24)]


def _verify_as_of(leaves: list[StoredLeaf], as_of: date) -> Report:
    return verify_log(leaves, STAMPED_CPS, vkeys=[VKEY], origin=ORIGIN, as_of=as_of)


def test_content_deleted_before_its_retention_could_end_fails() -> None:
    """The QA repro: a chunk deleted by hand in its first year (trigger dropped)."""
    report = _verify_as_of(_purge(STAMPED, {14, 15}), date(2026, 12, 6))
    assert str(report.failure) == (
        "entry 14: content purged before its retention could end: the entry was appended "
        "after entry 13 (2026-11-24T12:00:00+00:00), so it had to be kept until at least "
        "2027-11-23; it is gone on 2026-12-06"
    )


@pytest.mark.parametrize(
    ("stamp", "last_early_day"),
    [
        (T, date(2027, 11, 23)),  # a year from the day before
        (datetime(2024, 3, 1, 0, 30, tzinfo=UTC), date(2025, 3, 1)),  # from 29 Feb 2024
        (datetime(2026, 1, 1, 23, 0, tzinfo=timezone(timedelta(hours=-9))), date(2027, 1, 1)),
    ],
)
def test_the_earliest_lawful_purge_is_a_day_after_the_shortest_retention(
    stamp: datetime, last_early_day: date
) -> None:
    leaves = _purge(_stamped([stamp] * 4), {2})
    cps = [_checkpoint(leaves, 4)]
    early = verify_log(leaves, cps, vkeys=[VKEY], origin=ORIGIN, as_of=last_early_day)
    assert early.failure is not None
    assert early.failure.position == 2
    lawful = last_early_day + timedelta(days=1)
    assert earliest_lawful_purge(stamp) == lawful
    late = verify_log(leaves, cps, vkeys=[VKEY], origin=ORIGIN, as_of=lawful)
    assert late.ok
    assert (late.purged, late.purged_undated) == (1, 0)


def test_the_nearest_earlier_entry_with_content_dates_a_purged_run() -> None:
    times = [T - timedelta(days=800)] * 4 + [T] * 4
    leaves = _purge(_stamped(times), {0, 1, 5, 6, 7})  # 0, 1: an expired prefix
    cps = [_checkpoint(leaves, 8)]
    report = verify_log(leaves, cps, vkeys=[VKEY], origin=ORIGIN, as_of=date(2026, 12, 6))
    assert report.failure is not None
    assert str(report.failure).startswith("entry 5: content purged before its retention")
    assert "after entry 4 (2026-11-24" in str(report.failure)


def test_a_purge_after_an_old_entry_passes_and_a_purged_prefix_is_undated() -> None:
    times = [T - timedelta(days=800)] * 4 + [T - timedelta(days=400)] * 4
    leaves = _purge(_stamped(times), {0, 1, 4, 5, 6, 7})
    cps = [_checkpoint(leaves, 8)]
    report = verify_log(leaves, cps, vkeys=[VKEY], origin=ORIGIN, as_of=date(2026, 12, 6))
    assert report.ok, report.failure
    assert (report.purged, report.purged_undated) == (6, 2)


def test_content_without_a_time_dates_nothing() -> None:
    report = verify_log(
        _purge(LEAVES, {5}), CHECKPOINTS, vkeys=[VKEY], origin=ORIGIN, as_of=date(2026, 12, 6)
    )
    assert report.ok
    assert (report.purged, report.purged_undated) == (1, 1)


def test_a_failure_stops_the_chunked_feed_at_the_purged_entry() -> None:
    verifier = Verifier(STAMPED_CPS, vkeys=[VKEY], origin=ORIGIN, as_of=date(2026, 12, 6))
    leaves = _purge(STAMPED, {9})
    assert verifier.feed(leaves[:8])
    assert not verifier.feed(leaves[8:16])
    report = verifier.finish()
    assert report.failure is not None
    assert report.failure.position == 9


@given(
    gap=st.timedeltas(min_value=-STAMP_SLACK, max_value=timedelta(days=2000)),
    method=st.sampled_from(RecordingMethod),
    late=st.integers(min_value=1, max_value=800),
)
def test_a_lawful_purge_never_fails(gap: timedelta, method: RecordingMethod, late: int) -> None:
    """Whatever the recording method: entry 1, stamped no earlier than a day before entry 0
    and purged once its own retain_until has passed (as the store's trigger allows), verifies
    on any later day."""
    stamp = T + gap
    entry = provision_entry(
        decision=DECISION, contract=CONTRACT, outcome=Outcome.ALLOWED, transfer_id="t",
        entry_id="e", time=stamp, subject_key="k", method=method,
    )  # fmt: skip
    record = to_record(entry)
    first = _stamped([T])[0]
    leaves = [first, StoredLeaf(index=1, leaf_hash=record.leaf_hash, leaf=None)]
    as_of = record.retain_until + timedelta(days=late)  # the purge ran after retain_until
    report = verify_log(leaves, [], vkeys=[VKEY], origin=ORIGIN, as_of=as_of)
    assert report.ok, report.failure


def test_chunked_feeding_gives_the_same_answer() -> None:
    from gateway.ledger.verify import Verifier

    verifier = Verifier(CHECKPOINTS, vkeys=[VKEY], origin=ORIGIN)
    for start in range(0, 40, 3):
        assert verifier.feed(LEAVES[start : start + 3])
    assert verifier.finish().ok


def test_log_entries_take_the_canonical_fast_path() -> None:
    """Entries are plain JSON types, so appends canonicalize on the fast path (bench: ledger)."""
    from datetime import date

    from gateway.contracts import load_contract
    from gateway.ledger.canonical import canonicalize_general, fast_path_applies
    from gateway.ledger.entries import Outcome, provision_entry
    from gateway.models import LegalBasis, SubjectState
    from gateway.policy import ProvisionItem, decide
    from tests.integration.conftest import REPO

    contract = load_contract(REPO / "partners" / "google-customer-match.toml", date(2026, 11, 24))
    item = ProvisionItem(
        subject_id="m-1",
        purpose="ad_customer_match",
        legal_basis=LegalBasis.CONSENT,
        fields=("email",),
    )
    decision = decide(item, contract, SubjectState(subject_id="m-1"), NOW)
    entry = provision_entry(
        decision=decision.model_copy(update={"allowed": True, "fields_sent": ("email",)}),
        contract=contract,
        outcome=Outcome.ALLOWED,
        transfer_id="t",
        entry_id="e",
        time=NOW,
        subject_key="k:00",
    )
    assert fast_path_applies(entry)
    assert canonicalize_general(entry).startswith(b'{"cross_border_basis":"foreign_consent"')
