"""Subject keys: keyed HMAC pseudonyms with the key id in front, verifiable across rotation."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.errors import ConfigError
from gateway.pseudonym import key_id_of, subject_key, subject_keyer, verify_subject_key

OLD = b"\x01" * 32
NEW = b"\x02" * 32


def test_subject_key_is_hmac_sha256_with_key_id_prefix() -> None:
    expected = hmac.new(OLD, b"cust-42", hashlib.sha256).hexdigest()
    # RFC 4231 test case 2 pins the primitive itself.
    rfc4231 = hmac.new(b"Jefe", b"what do ya want for nothing?", hashlib.sha256).hexdigest()
    assert rfc4231 == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert subject_key("cust-42", key_id="2026-01", key=OLD) == f"2026-01:{expected}"
    assert subject_key("what do ya want for nothing?", key_id="k", key=b"Jefe") == f"k:{rfc4231}"
    utf8 = hmac.new(OLD, "顧客-42".encode(), hashlib.sha256).hexdigest()
    assert subject_key("顧客-42", key_id="k", key=OLD) == f"k:{utf8}"


def test_it_is_not_a_plain_hash_of_the_subject() -> None:
    value = subject_key("cust-42", key_id="k1", key=OLD)
    assert hashlib.sha256(b"cust-42").hexdigest() not in value
    assert value != subject_key("cust-42", key_id="k1", key=NEW)


def test_rotation_keeps_old_keys_verifiable() -> None:
    written_before = subject_key("cust-42", key_id="k1", key=OLD)
    written_after = subject_key("cust-42", key_id="k2", key=NEW)
    keyring = {"k1": OLD, "k2": NEW}  # k2 current, k1 retired but kept for verification
    assert verify_subject_key("cust-42", written_before, keyring)
    assert verify_subject_key("cust-42", written_after, keyring)
    assert not verify_subject_key("cust-43", written_before, keyring)
    assert not verify_subject_key("cust-42", written_before, {"k2": NEW})  # k1 dropped


@pytest.mark.parametrize(
    "value",
    [
        "",
        "k1",
        "k1:",
        ":abc",
        "k9:" + "0" * 64,
        "k1:" + "0" * 63,
        "k1:" + "é" * 64,
        "k1:" + "0" * 64,
    ],
)
def test_malformed_or_wrong_values_do_not_verify(value: str) -> None:
    assert not verify_subject_key("cust-42", value, {"k1": OLD})


def test_tampered_digest_does_not_verify() -> None:
    value = subject_key("cust-42", key_id="k1", key=OLD)
    flipped = value[:-1] + ("0" if value[-1] != "0" else "1")
    assert not verify_subject_key("cust-42", flipped, {"k1": OLD})
    assert not verify_subject_key("cust-42", value.upper(), {"k1": OLD})


@pytest.mark.parametrize(("key_id", "key"), [("", OLD), ("a:b", OLD), ("k1", b"")])
def test_bad_key_material_is_a_config_error(key_id: str, key: bytes) -> None:
    with pytest.raises(ConfigError):
        subject_key("cust-42", key_id=key_id, key=key)


def test_key_id_of() -> None:
    assert key_id_of(subject_key("x", key_id="2026-q1", key=OLD)) == "2026-q1"
    assert key_id_of("no separator") is None


@given(subject=st.text(), key=st.binary(min_size=1, max_size=64))
def test_any_subject_round_trips(subject: str, key: bytes) -> None:
    try:
        value = subject_key(subject, key_id="k", key=key)
    except UnicodeEncodeError:
        assert not verify_subject_key(subject, "k:" + "0" * 64, {"k": key})
        return
    assert verify_subject_key(subject, value, {"k": key})
    assert len(value) == 2 + 64


@given(
    subjects=st.lists(st.text(st.characters(exclude_categories=["Cs"])), min_size=1, max_size=5),
    key=st.binary(min_size=1, max_size=200),  # longer than a SHA-256 block (64) too
    key_id=st.sampled_from(["k", "2026-01"]),
)
def test_the_keyed_states_give_hmac_sha256_for_every_key_and_subject(
    subjects: list[str], key: bytes, key_id: str
) -> None:
    keyer = subject_keyer(key_id, key)
    for subject in subjects * 2:  # the keyed states are copied, never used up
        expected = hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()
        assert keyer(subject) == f"{key_id}:{expected}"
        assert subject_key(subject, key_id=key_id, key=key) == f"{key_id}:{expected}"


@pytest.mark.parametrize(("key_id", "key"), [("", OLD), ("a:b", OLD), ("k1", b"")])
def test_a_keyer_refuses_bad_key_material_every_time(key_id: str, key: bytes) -> None:
    for _ in range(2):  # a refusal is not cached as an answer
        with pytest.raises(ConfigError):
            subject_keyer(key_id, key)
