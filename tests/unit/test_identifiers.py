"""The `google` identifier profile: Google's published examples, the rules, and properties."""

from __future__ import annotations

import hashlib
import re

import phonenumbers
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from gateway.identifiers import (
    CLEAR_KINDS,
    HASHED_KINDS,
    ISO_3166_ALPHA2,
    KINDS,
    PREHASHED_KINDS,
    Hashed,
    Hasher,
    Normalized,
    Reason,
    Rejected,
    UnknownKind,
    digest,
    hash_emails,
    hash_many,
    hash_phones,
    normalize,
    normalize_and_hash,
    transform_for,
)
from gateway.identifiers import phone as phone_paths
from gateway.identifiers.results import HASH_IN_PLAIN_FIELD, MESSAGES, POSTAL_CODE_CONTROLS
from gateway.models import Transform

HEX64 = re.compile(r"[0-9a-f]{64}")
ALL_MESSAGES = {*MESSAGES.values(), HASH_IN_PLAIN_FIELD, POSTAL_CODE_CONTROLS}

# shared/design/identifiers.md, from Google's "Format user data": (input, field, normalized, sha256)
GOOGLE_EXAMPLES = [
    (
        "dana@example.com",
        "email",
        "dana@example.com",
        "07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3",
    ),
    (
        "DanaM@example.com",
        "email",
        "danam@example.com",
        "1df6b43bc68dd38eca94e6a65b4f466ae537b796c81a526918b40ac4a7b906c7",
    ),
    (
        "ALEXF@example.com",
        "email",
        "alexf@example.com",
        "19de0a9906ebee29fe82087be5ec44f3c01e40730bc808b663c71f19dd6b12f2",
    ),
    (
        "AlexF@cymbalgroup.com",
        "email",
        "alexf@cymbalgroup.com",
        "7d2d80e240594dcee2e57f57885ee286c4b232dd142234d7a0af6d31cc86679b",
    ),
    (
        "alexF@altostrat.com",
        "email",
        "alexf@altostrat.com",
        "063c45291827d4994f98357b72862b25885834fd53cf8f0e4af359916fc03c62",
    ),
    (
        "+1-800-555-0100",
        "phone",
        "+18005550100",
        "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30",
    ),
    (
        "+1 800-555-0101",
        "phone",
        "+18005550101",
        "61d6c2976b5d92b1ad63073a12fddd26040cd980067d03a93dd1cc50f1a3ac68",
    ),
    (
        "+1 800-555-0102",
        "phone",
        "+18005550102",
        "c5383c2eeada28210d27f011bc127d4f9562cf38ff0c9bba33dd45ae79b9fe7c",
    ),
    (
        "quinn@CYMBALGROUP.com",
        "email",
        "quinn@cymbalgroup.com",
        "05bb62526f091b45d20e243d194766cca8869137421047dc53fa4876d111a6f0",
    ),
    (
        "baklavainthebalkans@gmail.com  ",
        "email",
        "baklavainthebalkans@gmail.com",
        "f1fcde379f31f4d446b76ee8f34860eca2288adc6b6d6c0fdc56d9eee75a2fa5",
    ),
    (
        "rosario@example.org",
        "email",
        "rosario@example.org",
        "83a834cc5327bc4dee7c5408988040dc5813c7662611cd93b707aff72bf7d33f",
    ),
    (
        "cloudySanFrancisco@GMAIL.com",
        "email",
        "cloudysanfrancisco@gmail.com",
        "223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4",
    ),
    (
        "+1-800-555-0110",
        "phone",
        "+18005550110",
        "525c2390a4e2a9766fa8ddc341dd10414603baebefa401f5a5e29f55e176525d",
    ),
]


@pytest.mark.parametrize(("value", "kind", "normalized", "sha256"), GOOGLE_EXAMPLES)
def test_google_published_examples(value: str, kind: str, normalized: str, sha256: str) -> None:
    assert normalize_and_hash(kind, value) == Hashed(kind, normalized, sha256)
    assert hash_many(kind, [value]) == [sha256]


@pytest.mark.parametrize(
    ("value", "normalized"),
    [
        # Google's guide, Gmail: periods and a +suffix go, for gmail.com and googlemail.com only.
        ("cloudy.sanfrancisco+shopping@gmail.com", "cloudysanfrancisco@gmail.com"),
        ("user.name+NYC@Example.com", "user.name+nyc@example.com"),
        ("Jo.Ann.Smith+promo+x@GoogleMail.com", "joannsmith@googlemail.com"),
        (" \t dana @ example.com\n", "dana@example.com"),
        ("dana\u3000m@example.com", "danam@example.com"),  # ideographic space is whitespace
        ("Ünal@Example.com", "ünal@example.com"),
        ("U\u0308nal@example.com", "ünal@example.com"),  # NFC composes U + combining diaeresis
        ("a..b@example.co.jp", "a..b@example.co.jp"),  # the local part is not ours to judge
    ],
)
def test_email_rules(value: str, normalized: str) -> None:
    assert normalize("email", value) == Normalized("email", normalized)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", Reason.EMPTY),
        (" \t\n", Reason.EMPTY),
        ("dana", Reason.INVALID_EMAIL),
        ("dana@example", Reason.INVALID_EMAIL),
        ("@example.com", Reason.INVALID_EMAIL),
        ("dana@@example.com", Reason.INVALID_EMAIL),
        ("dana@ex@ample.com", Reason.INVALID_EMAIL),
        ("dana@.example.com", Reason.INVALID_EMAIL),
        ("dana@example.com.", Reason.INVALID_EMAIL),
        ("dana@example..com", Reason.INVALID_EMAIL),
        ("+shopping@gmail.com", Reason.INVALID_EMAIL),  # nothing left of the local part
        ("...@gmail.com", Reason.INVALID_EMAIL),
        ("dana\ud800@example.com", Reason.INVALID_EMAIL),  # lone surrogate: not encodable
        ("07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3", Reason.INVALID_EMAIL),
    ],
)
def test_email_rejections(value: str, code: Reason) -> None:
    result = normalize("email", value)
    assert isinstance(result, Rejected)
    assert (result.kind, result.code) == ("email", code)
    assert hash_emails([value]) == [result]


@pytest.mark.parametrize(
    ("value", "region", "normalized"),
    [
        ("090-1234-5678", None, "+819012345678"),  # default region JP
        ("03-1234-5678", None, "+81312345678"),
        ("０９０－１２３４－５６７８", None, "+819012345678"),  # full-width, as typed in Japan
        ("+81 (0)90 1234 5678", None, "+819012345678"),  # national prefix after the code
        ("0081 90 1234 5678", None, "+819012345678"),  # leading 00 counts as +
        ("0044 20 7946 0958", "US", "+442079460958"),
        ("(415) 555-0100", "US", "+14155550100"),
        ("1 415 555 0100", "us", "+14155550100"),
        ("020 7946 0958", "GB", "+442079460958"),
        ("+49 30 901820", "JP", "+4930901820"),
        ("010-1234-5678", "KR", "+821012345678"),
        ("+1-800-555-0100", "ZZ", None),  # an unknown record region rejects the value
    ],
)
def test_phone_rules(value: str, region: str | None, normalized: str | None) -> None:
    result = normalize("phone", value, region=region)
    if normalized is None:
        assert isinstance(result, Rejected)
        assert result.code is Reason.INVALID_REGION
    else:
        assert result == Normalized("phone", normalized)


def test_phone_default_region_is_a_parameter() -> None:
    assert normalize("phone", "(415) 555-0100", default_region="US").value == "+14155550100"  # type: ignore[union-attr]
    assert normalize("phone", "020 7946 0958", region="GB", default_region="US") == Normalized(
        "phone", "+442079460958"
    )


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", Reason.EMPTY),
        ("   ", Reason.EMPTY),
        ("12", Reason.INVALID_PHONE),
        ("+999 1234 5678", Reason.INVALID_PHONE),
        ("+81 90 1234 5678 9012 3456", Reason.INVALID_PHONE),
        ("not a phone", Reason.INVALID_PHONE),
        ("07e2f1394b0ea80e2adca010ea8318df697001a005ba7452720edda4b0ce57b3", Reason.INVALID_PHONE),
    ],
)
def test_phone_rejections(value: str, code: Reason) -> None:
    result = normalize("phone", value)
    assert isinstance(result, Rejected)
    assert (result.kind, result.code) == ("phone", code)


@pytest.mark.parametrize(
    ("value", "normalized"),
    [
        ("Dana", "dana"),
        ("  Mary   Ann ", "mary ann"),
        ("O'Brien-Smith", "obriensmith"),
        ("O`Brien", "obrien"),  # a symbol (Sk) typed for an apostrophe goes too
        ("José", "josé"),
        ("Jose\u0301", "josé"),  # NFC
        ("ÉLODIE", "élodie"),
        ("山田　太郎", "山田 太郎"),  # ideographic space becomes one space
        ("ヤマダ・タロウ", "ヤマダタロウ"),  # katakana middle dot is punctuation
        ("Zoë 🎉", "zoë"),
    ],
)
def test_name_rules(value: str, normalized: str) -> None:
    for kind in ("given_name", "family_name"):
        assert normalize(kind, value) == Normalized(kind, normalized)


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("", Reason.EMPTY),
        (" .-' ", Reason.EMPTY),
        ("🎉", Reason.EMPTY),
        # A plain field never takes a hash: it would be hashed again and never match.
        ("07E2F1394B0EA80E2ADCA010EA8318DF697001A005BA7452720EDDA4B0CE57B3", Reason.INVALID_HASH),
    ],
)
def test_name_rejections(value: str, code: Reason) -> None:
    result = normalize("given_name", value)
    assert isinstance(result, Rejected)
    assert result.code is code


@pytest.mark.parametrize(
    ("value", "normalized"), [("JP", "JP"), ("jp", "JP"), (" us ", "US"), ("AQ", "AQ")]
)
def test_region_code(value: str, normalized: str) -> None:
    assert normalize_and_hash("region_code", value) == Hashed("region_code", normalized, None)


@pytest.mark.parametrize("value", ["UK", "EU", "XK", "ZZ", "JPN", "J", "ＪＰ", "ıN"])
def test_region_code_rejections(value: str) -> None:
    result = normalize("region_code", value)
    assert isinstance(result, Rejected)
    assert result.code is Reason.INVALID_REGION


def test_region_list_is_iso_3166_1() -> None:
    assert len(ISO_3166_ALPHA2) == 249
    assert {"JP", "US", "GB", "DE", "KR", "CN", "IN", "BR", "AQ", "BV"} <= ISO_3166_ALPHA2


@pytest.mark.parametrize(
    ("value", "region", "normalized"),
    [
        ("94045", "US", "94045"),
        (" 94045-1234 ", "US", "94045-1234"),
        ("100-0001", None, "100-0001"),  # JP by default: as given
        (" SW1A 1AA ", "GB", "SW1A 1AA"),
    ],
)
def test_postal_code(value: str, region: str | None, normalized: str) -> None:
    result = normalize_and_hash("postal_code", value, region=region)
    assert result == Hashed("postal_code", normalized, None)


@pytest.mark.parametrize(
    ("value", "region", "code"),
    [
        ("9404", "US", Reason.INVALID_POSTAL_CODE),
        ("940451234", "US", Reason.INVALID_POSTAL_CODE),
        ("94045-12", "US", Reason.INVALID_POSTAL_CODE),
        ("  ", "GB", Reason.EMPTY),
        ("100\x000001", "JP", Reason.INVALID_POSTAL_CODE),
        ("94045", "XX", Reason.INVALID_REGION),
    ],
)
def test_postal_code_rejections(value: str, region: str, code: Reason) -> None:
    result = normalize("postal_code", value, region=region)
    assert isinstance(result, Rejected)
    assert result.code is code


def test_prehashed_fields_pass_through_lowercased() -> None:
    digest = "07E2F1394B0EA80E2ADCA010EA8318DF697001A005BA7452720EDDA4B0CE57B3"
    for kind in PREHASHED_KINDS:
        assert normalize_and_hash(kind, f" {digest} ") == Hashed(
            kind, digest.lower(), digest.lower()
        )
        assert hash_many(kind, [digest]) == [digest.lower()]
        for bad in (digest[:-1], digest + "0", "g" * 64, "07e2f139-4b0e"):
            result = normalize(kind, bad)
            assert isinstance(result, Rejected)
            assert result.code is Reason.INVALID_HASH


def test_kinds_and_transforms() -> None:
    assert {"email", "phone", "given_name", "family_name"} == HASHED_KINDS
    assert {"region_code", "postal_code"} == CLEAR_KINDS
    assert {"email_sha256", "phone_sha256"} <= PREHASHED_KINDS
    assert KINDS == HASHED_KINDS | CLEAR_KINDS | PREHASHED_KINDS
    assert transform_for("email") is Transform.SHA256
    assert transform_for("postal_code") is Transform.CLEAR
    assert transform_for("phone_sha256") is Transform.PREHASHED


def test_unknown_kind_raises() -> None:
    with pytest.raises(UnknownKind):
        normalize("ssn", "123")
    with pytest.raises(UnknownKind):
        hash_many("ssn", ["123"])
    with pytest.raises(UnknownKind):
        transform_for("ssn")


def test_results_compare_by_type() -> None:
    assert Normalized("email", "a@b.co") != ("email", "a@b.co")
    assert Hashed("email", "x", "y") != Rejected("email", Reason.EMPTY, "y")
    assert len({Hashed("email", "x", None), Hashed("email", "x", None)}) == 1


# Properties -------------------------------------------------------------------------------

emails = st.builds(
    "{}{}@{}{}".format,
    st.text(alphabet=st.sampled_from("abcXYZ09.+_- \t\u00e9\u0301\u3000"), max_size=12),
    st.sampled_from(["", "+tag", ".x"]),
    st.sampled_from(["gmail.com", "GoogleMail.com", "example.com", "ex..com", "x", "yahoo.co.jp "]),
    st.sampled_from(["", " ", "@", "."]),
)
any_text = st.text(max_size=40)


@settings(max_examples=300)
@given(kind=st.sampled_from(sorted(KINDS)), value=any_text | emails)
@example(kind="email", value="e \u0301@example.com")
@example(kind="given_name", value="e-\u0301")
@example(kind="email", value="A.\u0300@GMAIL.COM")
def test_normalization_is_idempotent_and_never_raises(kind: str, value: str) -> None:
    first = normalize(kind, value)
    if isinstance(first, Rejected):
        assert first.kind == kind
        assert first.message in ALL_MESSAGES  # never the raw value
        return
    assert normalize(kind, first.value) == first
    assert first.value.encode()  # always encodable as UTF-8


@settings(max_examples=300)
@given(kind=st.sampled_from(sorted(KINDS)), value=any_text | emails)
def test_every_hash_is_64_lowercase_hex(kind: str, value: str) -> None:
    result = normalize_and_hash(kind, value)
    if isinstance(result, Hashed) and kind not in CLEAR_KINDS:
        assert result.sha256 is not None
        assert HEX64.fullmatch(result.sha256)
        if kind in HASHED_KINDS:
            assert result.sha256 == hashlib.sha256(result.normalized.encode()).hexdigest()


@settings(max_examples=200)
@given(kind=st.sampled_from(sorted(KINDS)), values=st.lists(any_text | emails, max_size=8))
def test_bulk_path_equals_one_by_one(kind: str, values: list[str]) -> None:
    expected: list[str | Rejected] = []
    for value in values:
        result = normalize_and_hash(kind, value)
        expected.append(
            result if isinstance(result, Rejected) else result.sha256 or result.normalized
        )
    assert hash_many(kind, values) == expected


phone_numbers = st.sampled_from(
    ["090-1234-5678", "09012345678", "+1 (415) 555-0100", "0012025550123", "(415) 555-0100"]
)
regions = st.sampled_from([None, None, "US", "jp", " GB ", "XX", ""])


@settings(max_examples=300)
@given(
    default_region=st.sampled_from(["JP", "US", "XX"]),
    calls=st.lists(
        st.tuples(st.sampled_from(sorted(KINDS)), any_text | emails | phone_numbers, regions),
        max_size=12,
    ),
)
def test_one_value_at_a_time_equals_the_bulk_path(
    default_region: str, calls: list[tuple[str, str, str | None]]
) -> None:
    hasher = Hasher(default_region=default_region)
    for kind, value, region in calls * 2:  # the second time from its caches
        expected = hash_many(kind, [value], region=region, default_region=default_region)
        assert hasher(kind, value, region) == expected[0]
        assert hasher.of(kind)(value, region) == expected[0]


def test_a_hasher_refuses_an_unknown_kind() -> None:
    with pytest.raises(UnknownKind):
        Hasher()("ssn", "123")


# The phone fast path against phonenumbers ---------------------------------------------------

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
SEPARATORS = st.sampled_from(["", "", "", " ", "-", ".", "(", ")", " - "])


@st.composite
def phone_texts(draw: st.DrawFn) -> tuple[str, str]:
    """A region and a number written for it: valid, near-valid and invalid, many formats."""
    region = draw(st.sampled_from(["JP", "US", "GB", "DE", "KR", "CN", "IN", "BR", *REGIONS]))
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    assert metadata is not None
    code = str(metadata.country_code)
    example_number = phonenumbers.example_number(region)
    if example_number is not None and draw(st.booleans()):
        fmt = draw(st.sampled_from([0, 1, 2]))  # E164, INTERNATIONAL, NATIONAL
        text = phonenumbers.format_number(example_number, fmt)
        edit = draw(st.integers(0, len(text)))
        text = text[:edit] + draw(st.text("0123456789", max_size=2)) + text[edit:]
    else:
        national, idd = metadata.national_prefix or "", (metadata.international_prefix or "")[:3]
        prefixes = ["", "+", f"+{code}", code, "0", "00", f"+{code}0", national, idd, "1", "8"]
        prefix = draw(st.sampled_from([*prefixes, "+1", "+44", "+999"]))
        text = prefix + draw(st.text("0123456789", min_size=1, max_size=16))
    pieces = [draw(SEPARATORS) + ch for ch in text]
    return "".join(pieces) + draw(SEPARATORS), region


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(phone_texts())
def test_phone_fast_path_equals_phonenumbers(case: tuple[str, str]) -> None:
    text, region = case
    prepared = phone_paths.prepare(text)
    fast = phone_paths.fast(prepared, region)
    assume(fast is not None)
    assert fast == phone_paths.reference(prepared, region)


@pytest.mark.parametrize(
    ("text", "region"),
    [
        ("090-1234-5678", "JP"),
        ("+81 90-1234-5678", "JP"),
        ("+819012345678", "JP"),
        ("03 1234 5678", "JP"),
        ("+1 (415) 555-0100", "JP"),
        ("(415) 555-0100", "US"),
        ("020 7946 0958", "GB"),
        ("+49 30 901820", "JP"),
        ("010-1234-5678", "KR"),
        ("+86 138 0013 8000", "JP"),
        ("+91 98765 43210", "JP"),
        ("(11) 91234-5678", "BR"),
        ("+55 11 91234-5678", "JP"),
    ],
)
def test_common_formats_take_the_fast_path(text: str, region: str) -> None:
    prepared = phone_paths.prepare(text)
    fast = phone_paths.fast(prepared, region)
    assert fast is not None
    assert fast == phone_paths.reference(prepared, region)


def test_hash_phones_uses_the_region() -> None:
    us = hashlib.sha256(b"+14155550100").hexdigest()
    assert hash_phones(["(415) 555-0100"], region="US") == [us]
    assert hash_phones(["(415) 555-0100", ""], default_region="US") == [
        us,
        Rejected("phone", Reason.EMPTY, MESSAGES[Reason.EMPTY]),
    ]
    rejected = hash_phones(["(415) 555-0100"], region="XX")[0]
    assert isinstance(rejected, Rejected)
    assert rejected.code is Reason.INVALID_REGION


@given(st.binary(max_size=200))
def test_fast_sha256_is_hashlib_sha256(data: bytes) -> None:
    assert digest.sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
