"""C2SP tlog-checkpoint bodies in C2SP signed notes, signed with Ed25519 (pure).

A checkpoint body (c2sp.org/tlog-checkpoint, "Note text"):

    <origin>\\n<decimal tree size>\\n<base64 root hash>\\n[<extension line>\\n ...]

A signed note (c2sp.org/signed-note, "Format"): the text, a blank line, then one or more lines

    — <key name> <base64(4-byte key ID || signature)>\\n

with the em dash U+2014 and single spaces. For Ed25519 ("Ed25519 signatures") the key ID is
SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4] and the signature is RFC 8032
Ed25519 over the UTF-8 note text. A verifier key (the golang.org/x/mod/sumdb/note encoding that
C2SP's examples use) is `<name>+<hex key ID>+<base64(0x01 || public key)>`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "VerifierKey",
    "checkpoint_body",
    "key_id",
    "open_note",
    "parse_checkpoint",
    "parse_verifier_key",
    "sign_note",
    "verifier_key",
    "verify_note",
]

ED25519: Final = 0x01  # signed-note "Signature types": the Ed25519 type byte
MAX_SIGNATURES: Final = 100  # signed-note asks verifiers to accept at least 16
MAX_TREE_SIZE: Final = 2**64 - 1  # RFC 9162 §4.1: tree sizes are uint64
_SIG_PREFIX: Final = "\u2014 "  # em dash, space
_SIZE: Final = re.compile(r"0|[1-9][0-9]*", re.ASCII)
_HEX_ID: Final = re.compile(r"[0-9a-fA-F]{8}", re.ASCII)
_CONTROL: Final = re.compile(r"[\x00-\x09\x0b-\x1f]")  # every ASCII control but newline


class CheckpointError(ValueError):
    """A malformed checkpoint, note or key, an unknown key, or a signature that fails."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A parsed tlog-checkpoint body: the log's origin, tree size and RFC 9162 root hash."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()


class VerifierKey(NamedTuple):
    """A parsed verifier key: the key name, the 4-byte key ID, the 32-byte Ed25519 key."""

    name: str
    key_id: bytes
    public_key: bytes


def checkpoint_body(origin: str, size: int, root: bytes, extensions: Sequence[str] = ()) -> str:
    """The tlog-checkpoint note text for a tree head.

    Raises CheckpointError for an origin that is empty, holds a space, a control character or
    '+' (so that it can also be the key name, as tlog-checkpoint recommends), a size outside
    0..2^64-1, a root that is not 32 bytes, or an extension line that is empty or not one line.
    """
    if not _valid_name(origin):
        raise CheckpointError(f"origin {origin!r} is not a valid log name")
    if not 0 <= size <= MAX_TREE_SIZE:
        raise CheckpointError(f"tree size {size} is out of range")
    if len(root) != 32:
        raise CheckpointError("the root hash must be 32 bytes")
    for line in extensions:
        if not line or "\n" in line or _CONTROL.search(line):
            raise CheckpointError(f"extension line {line!r} is empty or not one line")
    lines = [origin, str(size), base64.b64encode(root).decode("ascii"), *extensions]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(body: str) -> Checkpoint:
    """Parse checkpoint note text (it must already be verified: see `open_note`).

    Raises CheckpointError unless it is at least three lines, each ending in a newline: a
    non-empty origin, a size without leading zeros, the base64 of a 32-byte hash, then any
    non-empty extension lines.
    """
    _check_text(body)
    lines = body[:-1].split("\n")  # tlog-checkpoint "Note text": lines separated by newlines
    if len(lines) < 3:
        raise CheckpointError("a checkpoint has at least three lines")
    origin, size_line, root_line, *extensions = lines
    if not origin:
        raise CheckpointError("the origin line is empty")
    if not _SIZE.fullmatch(size_line) or int(size_line) > MAX_TREE_SIZE:
        raise CheckpointError(f"tree size {size_line!r} is not a decimal without leading zeros")
    root = _b64decode(root_line, "root hash")
    if len(root) != 32 or base64.b64encode(root).decode("ascii") != root_line:
        raise CheckpointError("the root hash is not the canonical base64 of 32 bytes")
    if any(not line for line in extensions):
        raise CheckpointError("extension lines must not be empty")
    return Checkpoint(origin, int(size_line), root, tuple(extensions))


def key_id(name: str, public_key: bytes) -> bytes:
    """signed-note "Ed25519 signatures": SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


def verifier_key(name: str, public_key: bytes) -> str:
    """`<name>+<hex key ID>+<base64(0x01 || public key)>`. Raises CheckpointError."""
    if not _valid_name(name) or len(public_key) != 32:
        raise CheckpointError("a verifier key needs a valid name and a 32-byte Ed25519 key")
    material = base64.b64encode(bytes([ED25519]) + public_key).decode("ascii")
    return f"{name}+{key_id(name, public_key).hex()}+{material}"


def parse_verifier_key(vkey: str) -> VerifierKey:
    """Parse and check a verifier key. Raises CheckpointError when it is malformed, not
    Ed25519, or its key ID does not match its name and key."""
    name, _, rest = vkey.partition("+")
    hex_id, _, material = rest.partition("+")  # the base64 may itself hold '+'
    if not _valid_name(name) or not _HEX_ID.fullmatch(hex_id):
        raise CheckpointError(f"malformed verifier key {vkey!r}")
    raw = _b64decode(material, "verifier key")
    if len(raw) != 33 or raw[0] != ED25519:
        raise CheckpointError("the verifier key is not an Ed25519 key")
    stated = bytes.fromhex(hex_id)
    if key_id(name, raw[1:]) != stated:
        raise CheckpointError("the verifier key's ID does not match its name and key")
    return VerifierKey(name, stated, raw[1:])


def sign_note(body: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note: `body`, a blank line, and one Ed25519 signature line by `name`.

    Raises CheckpointError when the body is not valid note text or the name is not a valid
    key name.
    """
    _check_text(body)
    if not _valid_name(name):
        raise CheckpointError(f"key name {name!r} is empty or holds a space or '+'")
    public_key = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    signature = private_key.sign(body.encode("utf-8"))  # RFC 8032, over the note text
    blob = base64.b64encode(key_id(name, public_key) + signature).decode("ascii")
    return f"{body}\n{_SIG_PREFIX}{name} {blob}\n"


def open_note(note: str, vkey: str | Sequence[str], *, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint against trusted key(s) and parse it.

    With `origin`, also require that the checkpoint names that log. Raises CheckpointError for
    a malformed note, a bad signature by a trusted key, no valid trusted signature, a malformed
    checkpoint, or another origin.
    """
    checkpoint = parse_checkpoint(verify_note(note, vkey))
    if origin is not None and checkpoint.origin != origin:
        raise CheckpointError(f"the checkpoint is from {checkpoint.origin!r}, not {origin!r}")
    return checkpoint


def verify_note(note: str, vkeys: str | Sequence[str]) -> str:
    """Verify a signed note (signed-note "Signatures"); return its text.

    Signatures by keys not in `vkeys` (by name and key ID) are ignored; every one by a trusted
    key must verify, and at least one must be present. Raises CheckpointError otherwise.
    """
    trusted = _trusted_keys([vkeys] if isinstance(vkeys, str) else vkeys)
    text, signatures = _split_note(note)
    message = text.encode("utf-8")
    verified = False
    for name, blob in signatures:
        public_key = trusted.get((name, blob[:4]))
        if public_key is None:
            continue  # an unknown key: MUST be ignored
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(blob[4:], message)
        except InvalidSignature as exc:
            raise CheckpointError(f"the signature by {name!r} does not verify") from exc
        verified = True
    if not verified:
        raise CheckpointError("the note carries no signature by a trusted key")
    return text


def _trusted_keys(vkeys: Sequence[str]) -> dict[tuple[str, bytes], bytes]:
    trusted: dict[tuple[str, bytes], bytes] = {}
    for vkey in vkeys:
        name, kid, public_key = parse_verifier_key(vkey)
        if trusted.setdefault((name, kid), public_key) != public_key:
            raise CheckpointError(f"two trusted keys share the name {name!r} and key ID")
    return trusted


def _split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """signed-note "Format": (text, [(key name, key ID || signature)]). Raises CheckpointError."""
    _check_chars(note)
    split = note.rfind("\n\n")  # the text ends at the last blank line
    if split < 0:
        raise CheckpointError("the note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block.endswith("\n"):
        raise CheckpointError("the note does not end with a signature line")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise CheckpointError("the note carries too many signatures")
    return text, [_signature_line(line) for line in lines]


def _signature_line(line: str) -> tuple[str, bytes]:
    if not line.startswith(_SIG_PREFIX):
        raise CheckpointError(f"malformed signature line {line!r}")
    name, _, encoded = line[len(_SIG_PREFIX) :].partition(" ")
    blob = _b64decode(encoded, "signature")
    if not _valid_name(name) or len(blob) < 5:  # a 4-byte key ID and a signature
        raise CheckpointError(f"malformed signature line {line!r}")
    return name, blob


def _check_text(text: str) -> None:
    # signed-note "Format": note text is non-empty and ends in a newline.
    _check_chars(text)
    if not text.endswith("\n"):
        raise CheckpointError("note text must end with a newline")


def _check_chars(text: str) -> None:
    # signed-note "Format": valid UTF-8 and no ASCII control character but newline.
    if _CONTROL.search(text):
        raise CheckpointError("the note holds a control character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate has no UTF-8 form
        raise CheckpointError("the note is not valid UTF-8") from exc


def _valid_name(name: str) -> bool:
    # signed-note "Format": key names are non-empty, without Unicode spaces or '+' (and, being
    # note text, without control characters).
    return (
        bool(name)
        and "+" not in name
        and not _CONTROL.search(name)
        and not any(c.isspace() for c in name)
    )


def _b64decode(text: str, what: str) -> bytes:
    # RFC 4648 §4 standard alphabet with padding; anything else is malformed.
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise CheckpointError(f"the {what} is not valid base64") from exc
