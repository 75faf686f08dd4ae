"""The transfer log: a tamper-evident, append-only log of every provision, built like a
Certificate Transparency log. Wire formats (docs/ledger.md):

- `canonical`: RFC 8785 canonical JSON, the bytes of a leaf;
- `tree`: RFC 9162 §2.1 Merkle tree hashes, audit paths and consistency proofs;
- `checkpoint`: C2SP tlog-checkpoint notes, signed as C2SP signed notes with Ed25519.

All three are pure: no I/O, no clock, no logging.
"""

from gateway.ledger.canonical import CanonicalizationError, JsonValue, canonicalize
from gateway.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    VerifierKey,
    checkpoint_body,
    open_note,
    parse_checkpoint,
    parse_verifier_key,
    sign_note,
    verifier_key,
    verify_note,
)
from gateway.ledger.tree import (
    EMPTY_ROOT,
    Node,
    TreeState,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    perfect_subtrees,
    range_hash,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)

__all__ = [
    "EMPTY_ROOT",
    "CanonicalizationError",
    "Checkpoint",
    "CheckpointError",
    "JsonValue",
    "Node",
    "TreeState",
    "VerifierKey",
    "canonicalize",
    "checkpoint_body",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "open_note",
    "parse_checkpoint",
    "parse_verifier_key",
    "perfect_subtrees",
    "range_hash",
    "root_from_leaves",
    "sign_note",
    "verifier_key",
    "verify_consistency",
    "verify_inclusion",
    "verify_note",
]
