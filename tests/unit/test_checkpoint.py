"""C2SP tlog-checkpoint and signed-note: published notes, round trips, tampering, malformation.

Vectors:
- c2sp.org/signed-note's example note and verifier key (example.com/foo);
- golang.org/x/mod/sumdb/note's documented example: the PeterNeumann signer key, verifier key
  and signed note (Ed25519 is deterministic, so our signature must match theirs byte for byte);
- two checkpoints published by sum.golang.org, with its verifier key from cmd/go.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.keyring import LOG_SIGNING, Keyring, new_key
from gateway.ledger.checkpoint import (
    Checkpoint,
    CheckpointError,
    checkpoint_body,
    key_id,
    open_note,
    parse_checkpoint,
    parse_verifier_key,
    sign_note,
    verifier_key,
    verify_note,
)
from gateway.ledger.tree import TreeState, leaf_hash

EM = "\u2014"
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n"
    f"{EM} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAl"
    "TgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
GO_SIGNER = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
GO_NOTE = (
    f"{GO_TEXT}\n{EM} PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2"
    "pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTES = [
    (
        "go.sum database tree\n65209736\n5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=\n\n"
        f"{EM} sum.golang.org Az3grnbssgK7ubgFX36gVETtNv0U23qxyAhAMai2QUfeGa3nB/akvkMdlUErfc"
        "Zz7l/R3cVtYspg3dxXABkGZZKdsQ8=\n",
        65209736,
        "5+uGFjx6xBZG8ip1+wi77v+grwbhhukIrxEUS8PXvRo=",
    ),
    (
        "go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n"
        f"{EM} sum.golang.org Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIfNCOBm"
        "wn/C3YI8oW9/C8DJ87F61QqspBYwM=\n",
        31700353,
        "qINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=",
    ),
]
ORIGIN = "gateway.example/transfer-log"
ROOT = bytes(range(32))


def _key(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


def _public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _signed(body: str, seed: int = 1, name: str = ORIGIN) -> tuple[str, str]:
    key = _key(seed)
    return sign_note(body, name, key), verifier_key(name, _public(key))


# -- published vectors ------------------------------------------------------------------------


def test_c2sp_signed_note_example() -> None:
    assert verify_note(C2SP_NOTE, C2SP_VKEY) == "This is an example message.\n"
    name, kid, public_key = parse_verifier_key(C2SP_VKEY)
    assert (name, kid.hex()) == ("example.com/foo", "530d903a")
    assert public_key.hex() == "e932791ae6e7a840a46164c904786426d5e7821dd8b29a00d61cae72afdd4da4"
    assert verifier_key(name, public_key) == C2SP_VKEY
    assert key_id(name, public_key) == kid


def test_go_sumdb_note_example_signs_byte_for_byte() -> None:
    material = base64.b64decode(GO_SIGNER.split("+", 4)[4])  # 0x01 || Ed25519 seed; b64 has +
    assert material[0] == 0x01
    key = Ed25519PrivateKey.from_private_bytes(material[1:])
    assert verifier_key("PeterNeumann", _public(key)) == GO_VKEY
    assert sign_note(GO_TEXT, "PeterNeumann", key) == GO_NOTE
    assert verify_note(GO_NOTE, GO_VKEY) == GO_TEXT
    assert verify_note(GO_NOTE, [ENOCH_VKEY, GO_VKEY]) == GO_TEXT
    with pytest.raises(CheckpointError, match="no signature by a trusted key"):
        verify_note(GO_NOTE, ENOCH_VKEY)  # a valid note, by a key we do not trust


@pytest.mark.parametrize(("note", "size", "root"), SUMDB_NOTES)
def test_published_sum_golang_org_checkpoints(note: str, size: int, root: str) -> None:
    checkpoint = open_note(note, SUMDB_VKEY, origin="go.sum database tree")
    assert checkpoint == Checkpoint("go.sum database tree", size, base64.b64decode(root))
    with pytest.raises(CheckpointError):
        open_note(note.replace(str(size), str(size + 1)), SUMDB_VKEY)


def test_documented_example() -> None:
    """docs/ledger.md §3.3: the RFC 6962 reference tree, signed with a test-only key."""
    leaves = [
        bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657")
    ] + [bytes(range(0x60, 0x70))]
    root = TreeState().extend([leaf_hash(d) for d in leaves])[0].root()
    seed = hashlib.sha256(b"gateway ledger documentation example key").digest()
    assert seed.hex() == "8042703db14734edba5c02b1f3913e4963663b5bcfa8c1d0bf59ca39db98e0a3"
    key = Ed25519PrivateKey.from_private_bytes(seed)
    name = "example.com/transfer-log"
    vkey = "example.com/transfer-log+60c259a0+AamYfjhVuPUJQHWhQ4sLo2gf+nKwKMPacV2+sOpANuox"
    note = (
        "example.com/transfer-log\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n"
        f"{EM} example.com/transfer-log YMJZoMeXusqH7IzMOS1bOYPuNcSwmBYYgXYHSwXuICfOtFmA9d9TKBo2"
        "THOp3xcOUVurh1ylRrgqOcg2v+ceVCNYfAY=\n"
    )
    assert _public(key).hex() == "a9987e3855b8f5094075a1438b0ba3681ffa72b028c3da715dbeb0ea4036ea31"
    assert verifier_key(name, _public(key)) == vkey
    assert sign_note(checkpoint_body(name, 8, root), name, key) == note
    assert open_note(note, vkey, origin=name) == Checkpoint(name, 8, root)


# -- round trips ------------------------------------------------------------------------------


def test_checkpoint_body_layout() -> None:
    body = checkpoint_body(ORIGIN, 42, ROOT, ["ext one", "ext two"])
    assert body == (
        f"{ORIGIN}\n42\nAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\next one\next two\n"
    )
    assert parse_checkpoint(body) == Checkpoint(ORIGIN, 42, ROOT, ("ext one", "ext two"))
    assert checkpoint_body(ORIGIN, 0, ROOT).split("\n")[1] == "0"


def test_signed_checkpoint_round_trip() -> None:
    body = checkpoint_body(ORIGIN, 7, ROOT)
    note, vkey = _signed(body)
    assert note.startswith(body + "\n" + EM + " " + ORIGIN + " ")
    assert note.endswith("\n")
    assert note.count("\n") == body.count("\n") + 2
    assert open_note(note, vkey, origin=ORIGIN) == Checkpoint(ORIGIN, 7, ROOT)
    with pytest.raises(CheckpointError, match=r"not 'other\.example/log'"):
        open_note(note, vkey, origin="other.example/log")


def test_note_text_may_hold_blank_lines() -> None:
    text = "first paragraph\n\nsecond paragraph\n\n"  # the last blank line ends the text
    note, vkey = _signed(text)
    assert verify_note(note, vkey) == text


def test_keyring_signing_key_round_trip() -> None:
    ring = Keyring((new_key(LOG_SIGNING, datetime(2025, 1, 1, tzinfo=UTC)),))
    note = sign_note(checkpoint_body(ORIGIN, 1, ROOT), ORIGIN, ring.signing_key())
    vkey = verifier_key(ORIGIN, ring.signing_public_key())
    assert open_note(note, vkey).size == 1


def test_unknown_signatures_are_ignored_and_known_ones_must_all_verify() -> None:
    body = checkpoint_body(ORIGIN, 3, ROOT)
    first, vkey1 = _signed(body, seed=1)
    second, vkey2 = _signed(body, seed=2, name="witness.example/w1")
    cosigned = first + second.split("\n\n")[-1]  # two signature lines
    assert open_note(cosigned, vkey1).size == 3  # the witness's line is ignored
    assert open_note(cosigned, vkey2).size == 3
    assert open_note(cosigned, [vkey1, vkey2]).size == 3
    # Same name, other key (so other key ID): unknown, ignored; alone it is not enough.
    _, same_name_other_key = _signed(body, seed=3)
    with pytest.raises(CheckpointError, match="no signature by a trusted key"):
        open_note(first, same_name_other_key)
    # A known key whose signature fails rejects the whole note, even beside a good one.
    other_body = _signed(checkpoint_body(ORIGIN, 4, ROOT), seed=1)[0]
    with pytest.raises(CheckpointError, match="does not verify"):
        open_note(first + other_body.split("\n\n")[-1], vkey1)


# -- tampering --------------------------------------------------------------------------------


def test_every_changed_body_character_is_caught() -> None:
    body = checkpoint_body(ORIGIN, 123456, ROOT)
    note, vkey = _signed(body)
    for position, char in enumerate(body):
        if char == "\n":
            continue
        other = "A" if char != "A" else "B"
        with pytest.raises(CheckpointError):
            open_note(note[:position] + other + note[position + 1 :], vkey)


def test_every_changed_signature_byte_is_caught() -> None:
    note, vkey = _signed(checkpoint_body(ORIGIN, 9, ROOT))
    text, line = note.split("\n\n")
    prefix, encoded = line.rstrip("\n").rsplit(" ", 1)
    blob = base64.b64decode(encoded)
    for position in range(len(blob)):
        for bit in (0x01, 0x80):
            changed = bytearray(blob)
            changed[position] ^= bit
            tampered = f"{text}\n\n{prefix} {base64.b64encode(bytes(changed)).decode()}\n"
            with pytest.raises(CheckpointError):
                open_note(tampered, vkey)


@settings(max_examples=100, deadline=None)
@given(
    origin=st.text(
        st.characters(exclude_categories=["Cs", "Cc", "Zs", "Zl", "Zp"], exclude_characters="+"),
        min_size=1,
        max_size=20,
    ).filter(lambda s: not any(c.isspace() for c in s)),
    size=st.integers(min_value=0, max_value=2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(
        st.text(st.characters(exclude_categories=["Cs", "Cc"]), min_size=1, max_size=10),
        max_size=3,
    ),
)
def test_any_checkpoint_round_trips(
    origin: str, size: int, root: bytes, extensions: list[str]
) -> None:
    body = checkpoint_body(origin, size, root, extensions)
    expected = Checkpoint(origin, size, root, tuple(extensions))
    assert parse_checkpoint(body) == expected
    note, vkey = _signed(body, name=origin)
    assert open_note(note, vkey, origin=origin) == expected


# -- malformation -----------------------------------------------------------------------------

GOOD_ROOT = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    "body",
    [
        f"{ORIGIN}\n1\n{GOOD_ROOT}",  # no final newline
        f"{ORIGIN}\n1\n",  # two lines
        f"\n1\n{GOOD_ROOT}\n",  # empty origin
        f"{ORIGIN}\n01\n{GOOD_ROOT}\n",  # leading zero
        f"{ORIGIN}\n00\n{GOOD_ROOT}\n",
        f"{ORIGIN}\n-1\n{GOOD_ROOT}\n",
        f"{ORIGIN}\n+1\n{GOOD_ROOT}\n",
        f"{ORIGIN}\n 1\n{GOOD_ROOT}\n",
        f"{ORIGIN}\n1_0\n{GOOD_ROOT}\n",
        f"{ORIGIN}\n\u0661\n{GOOD_ROOT}\n",  # an Arabic-Indic digit one
        f"{ORIGIN}\n{2**64}\n{GOOD_ROOT}\n",  # beyond uint64
        f"{ORIGIN}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n",  # 31 bytes
        f"{ORIGIN}\n1\n{GOOD_ROOT.rstrip('=')}\n",  # no padding
        f"{ORIGIN}\n1\n{GOOD_ROOT[:-2]}9=\n",  # non-canonical trailing bits
        f"{ORIGIN}\n1\n{GOOD_ROOT}\n\n",  # an empty extension line
        f"{ORIGIN}\n1\n{GOOD_ROOT}\nok\n\nok\n",
        f"{ORIGIN}\n1\n{GOOD_ROOT}\ntab\there\n",  # a control character
    ],
)
def test_malformed_checkpoints(body: str) -> None:
    with pytest.raises(CheckpointError):
        parse_checkpoint(body)


def test_checkpoint_body_refuses_what_it_cannot_write() -> None:
    for origin in ("", "has space", "has+plus", "new\nline", "bell\a"):
        with pytest.raises(CheckpointError, match="origin"):
            checkpoint_body(origin, 1, ROOT)
    with pytest.raises(CheckpointError, match="size"):
        checkpoint_body(ORIGIN, -1, ROOT)
    with pytest.raises(CheckpointError, match="size"):
        checkpoint_body(ORIGIN, 2**64, ROOT)
    with pytest.raises(CheckpointError, match="32 bytes"):
        checkpoint_body(ORIGIN, 1, ROOT[:31])
    for line in ("", "two\nlines", "bell\a"):
        with pytest.raises(CheckpointError, match="extension"):
            checkpoint_body(ORIGIN, 1, ROOT, [line])


def _note_variants() -> list[str]:
    note, _ = _signed(checkpoint_body(ORIGIN, 5, ROOT))
    text, line = note.split("\n\n")
    sig = line.rstrip("\n").rsplit(" ", 1)[1]
    return [
        note[:-1],  # no final newline
        note.replace("\n\n", "\n"),  # no blank line
        text + "\n\n",  # no signature lines
        f"{text}\n\n- {ORIGIN} {sig}\n",  # hyphen, not em dash
        f"{text}\n\n{EM}{ORIGIN} {sig}\n",  # no space after the dash
        f"{text}\n\n{EM} {ORIGIN}  {sig}\n",  # two spaces
        f"{text}\n\n{EM} {ORIGIN} {sig}\n\n",  # trailing blank line
        f"{text}\n\n{EM} {ORIGIN} {sig[:-4]}\n",  # broken base64
        f"{text}\n\n{EM} {ORIGIN} AAAAAA==\n",  # key ID and no signature
        f"{note}{EM} unknown.example AAAAAA==\n",  # the same, by an unknown key, beside a good one
        f"{text}\n\n{EM} {ORIGIN}+x {sig}\n",  # '+' in the key name
        f"{text}\n\n{EM}  {sig}\n",  # empty key name
        note.replace(ORIGIN, ORIGIN + "\x01", 1),  # a control character
        note.replace(ORIGIN, ORIGIN + "\ud800", 1),  # a lone surrogate: not UTF-8
        text + "\n\n" + line * 101,  # too many signatures
    ]


@pytest.mark.parametrize("note", _note_variants())
def test_malformed_notes(note: str) -> None:
    vkey = _signed("x\n")[1]
    with pytest.raises(CheckpointError):
        open_note(note, vkey)


@pytest.mark.parametrize(
    "vkey",
    [
        "",
        "PeterNeumann",
        "PeterNeumann+c74f20a3",
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong ID
        "PeterNeumann+c74f20+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # short ID
        "PeterNeumann+0xc74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
        "PeterNeumann+c74f20a3+Ahpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # type 0x02
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10",  # short key
        "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # space
    ],
)
def test_malformed_verifier_keys(vkey: str) -> None:
    with pytest.raises(CheckpointError):
        parse_verifier_key(vkey)


def test_verifier_key_accepts_uppercase_hex_as_go_does() -> None:
    assert parse_verifier_key(GO_VKEY.replace("c74f20a3", "C74F20A3")).name == "PeterNeumann"


def test_signing_refuses_bad_text_and_names() -> None:
    key = _key(1)
    for body in ("no newline", "bell\a\n", "lone \ud800\n"):
        with pytest.raises(CheckpointError):
            sign_note(body, ORIGIN, key)
    for name in ("", "a b", "a+b"):
        with pytest.raises(CheckpointError):
            sign_note("x\n", name, key)
    with pytest.raises(CheckpointError):
        verifier_key(ORIGIN, b"short")


def test_trusted_key_lists() -> None:
    note, vkey = _signed("x\n")
    assert verify_note(note, [vkey, vkey]) == "x\n"  # the same key twice is harmless
    with pytest.raises(CheckpointError):
        verify_note(note, [])
