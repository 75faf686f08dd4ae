"""The log verifier catches each way the issue names of tampering with a stored log."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from gateway.ledger.checkpoint import checkpoint_body, sign_note, verifier_key
from gateway.ledger.store import StoredCheckpoint, StoredLeaf
from gateway.ledger.tree import leaf_hash, root_from_leaves
from gateway.ledger.verify import verify_log

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
