"""The transfer log: a tamper-evident, append-only log of every provision, built like a
Certificate Transparency log. Wire formats (docs/ledger.md):

- `canonical`: RFC 8785 canonical JSON, the bytes of a leaf;
- `tree`: RFC 9162 §2.1 Merkle tree hashes, audit paths and consistency proofs;
- `checkpoint`: C2SP tlog-checkpoint notes, signed as C2SP signed notes with Ed25519.

All three are pure: no I/O, no clock, no logging. Import the modules themselves: the package
loads none of them, so a process that needs the tree alone (the log writer) loads no
cryptography.
"""
