"""`phone` in the `google` profile: E.164 as Google's libphonenumber reads the number.

Google's guide, "Format user data", phone numbers: E.164 (`+`, country calling code, digits).
The design page adds: a number without `+` is read in the record's region, else the gateway's
default region; a leading `00` counts as `+`; not a possible number: `invalid_phone`.

Two paths, one answer. `reference` is the `phonenumbers` library itself (parse,
is_possible_number, format E.164), about 45 µs a number. `fast` reads digit strings, with or
without `+` and the usual separators, straight from phonenumbers' own metadata in a few µs; it
follows `phonenumberutil.parse` step by step and returns None (use `reference`) wherever that
function would do more than it does: international-dialing or carrier prefixes, a national
prefix with a transform rule, a country code written without `+`, letters, extensions. A
property test compares the two on generated numbers of many regions.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache

import phonenumbers
from phonenumbers import PhoneMetadata, PhoneNumber

from gateway.identifiers.digest import sha256 as _sha256
from gateway.identifiers.results import Reason, Rejected, rejection

KIND = "phone"
_EMPTY = rejection(KIND, Reason.EMPTY)
_INVALID = rejection(KIND, Reason.INVALID_PHONE)

# Separators the fast path removes; phonenumbers ignores all of them as punctuation.
_SEPARATORS = str.maketrans("", "", " -().")
_MIN_NSN, _MAX_NSN = 2, 17  # phonenumberutil._MIN_LENGTH_FOR_NSN, _MAX_LENGTH_FOR_NSN
_FAST_DIGITS = range(4, 21)  # digit counts the fast path takes; the rest is rare
_CALLING_CODES: frozenset[str] = frozenset(map(str, phonenumbers.COUNTRY_CODE_TO_REGION_CODE))


def prepare(value: str) -> str:
    """The text both paths read: NFKC, trimmed, a leading `00` written as `+`.

    NFKC turns full-width digits, `＋` and the ideographic space (common in Japanese data) into
    ASCII, so those numbers take the fast path; phonenumbers reads them the same either way.
    """
    text = value if value.isascii() else unicodedata.normalize("NFKC", value)
    text = text.strip()
    if text.startswith("00"):
        # Design page: "a leading 00 international prefix counts as +", whatever the region's
        # own international prefix is (JP dials 010, so phonenumbers alone would not).
        text = "+" + text[2:]
    return text


def reference(text: str, region: str) -> str | Rejected:
    """phonenumbers' E.164 for prepared `text` read in `region`, or `invalid_phone`."""
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return _INVALID
    if not phonenumbers.is_possible_number(number):
        return _INVALID
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@dataclass(frozen=True, slots=True)
class _Plan:
    """What parse() consults for one region (or one calling code, for numbers with `+`)."""

    calling_code: str
    national_prefix: re.Pattern[str] | None  # metadata.national_prefix_for_parsing
    transform: bool  # metadata.national_prefix_transform_rule is set
    general: re.Pattern[str] | None  # general_desc.national_number_pattern
    strip_lengths: frozenset[int]  # lengths parse() accepts after removing a national prefix
    possible_lengths: frozenset[int]  # lengths is_possible_number() accepts for the code
    idd: re.Pattern[str] | None  # international dialing prefix, national numbers only

    def strip(self, number: str) -> str | None:
        """phonenumberutil._maybe_strip_national_prefix_carrier_code and parse()'s length test.

        None where a transform rule would rewrite the number: `reference` handles those.
        """
        if self.national_prefix is None:
            return number
        match = self.national_prefix.match(number)
        if match is None:
            return number
        if self.transform:
            groups = match.groups()
            if not groups or groups[-1] is not None:
                return None
        rest = number[match.end() :]
        general = self.general
        # A number that was viable stays as is unless it is still viable without the prefix.
        if general is not None and general.fullmatch(number) and not general.fullmatch(rest):
            return number
        return rest if len(rest) in self.strip_lengths else number

    def finish(self, national: str) -> str | Rejected | None:
        """E.164 for a national number (after the country code), as parse() and is_possible()."""
        if len(national) < _MIN_NSN:
            return _INVALID
        stripped = self.strip(national)
        if stripped is None:
            return None
        if len(stripped) not in self.possible_lengths:  # all of them within _MIN/_MAX_NSN
            return _INVALID
        return "+" + self.calling_code + stripped


def fast(text: str, region: str) -> str | Rejected | None:
    """What `reference` returns for prepared `text`, or None where this path does not decide."""
    if text.isdigit():  # most stored numbers: nothing to remove (translate() costs the most)
        digits, plus = text, False
    else:
        digits = text.translate(_SEPARATORS)
        plus = digits[:1] == "+"
        if plus:
            digits = digits[1:]
        if not digits.isdigit():
            return None
    if not (digits.isascii() and len(digits) in _FAST_DIGITS):
        return None
    if plus:
        return _international(digits)
    plan = _plan_for_region(region)
    if plan is None or digits.startswith(plan.calling_code):
        # A region phonenumbers does not know, or a country code written without `+`, which
        # parse() may or may not take as one.
        return None
    if plan.idd is not None and plan.idd.match(digits):
        return None
    return plan.finish(digits)


def _international(digits: str) -> str | Rejected | None:
    if digits[0] == "0":
        return None  # no calling code starts with 0; parse() retries such numbers as national
    for size in (1, 2, 3):  # phonenumberutil._extract_country_code: the shortest known code
        if digits[:size] in _CALLING_CODES:
            return _plan_for_calling_code(digits[:size]).finish(digits[size:])
    return None


def normalize_phone(value: str, region: str) -> str | Rejected:
    """E.164 for `value`, read in `region` (already a valid ISO code) when it has no `+`."""
    text = prepare(value)
    if not text:
        return _EMPTY
    result = fast(text, region)
    return reference(text, region) if result is None else result


def hash_phones_in(values: Iterable[str], region: str) -> list[str | Rejected]:
    """The SHA-256 (hex) of each number's E.164, or its rejection, in order."""
    out: list[str | Rejected] = []
    append = out.append
    sha256 = _sha256
    for value in values:
        result = normalize_phone(value, region)
        append(result if isinstance(result, Rejected) else sha256(result.encode()).hexdigest())
    return out


@cache
def _plan_for_region(region: str) -> _Plan | None:
    metadata = PhoneMetadata.metadata_for_region(region)
    if metadata is None or metadata.country_code is None:
        return None
    return _plan(metadata, metadata.country_code, with_idd=True)


@cache
def _plan_for_calling_code(calling_code: str) -> _Plan:
    code = int(calling_code)
    main_region = phonenumbers.region_code_for_country_code(code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, main_region)
    assert metadata is not None  # every code of COUNTRY_CODE_TO_REGION_CODE has metadata
    return _plan(metadata, code, with_idd=False)


def _plan(metadata: PhoneMetadata, code: int, *, with_idd: bool) -> _Plan:
    general = metadata.general_desc
    lengths = set(general.possible_length) if general else set()
    local_only = set(general.possible_length_local_only) if general else set()
    longest = max(lengths, default=0)
    # phonenumberutil._test_number_length: parse() keeps a stripped number unless it is too
    # short, possible only locally, or of a length that no number here has (too long is kept).
    strip_lengths = {n for n in range(_MAX_NSN + 4) if n not in local_only}
    strip_lengths = {n for n in strip_lengths if n in lengths or n > longest}
    return _Plan(
        calling_code=str(code),
        national_prefix=_compile(metadata.national_prefix_for_parsing),
        transform=bool(metadata.national_prefix_transform_rule),
        general=_compile(general.national_number_pattern if general else None),
        strip_lengths=frozenset(strip_lengths),
        possible_lengths=_possible_lengths(code),
        idd=_compile(metadata.international_prefix) if with_idd else None,
    )


def _possible_lengths(code: int) -> frozenset[int]:
    # is_possible_number() depends only on the calling code and the national number's length.
    return frozenset(
        n
        for n in range(_MIN_NSN, _MAX_NSN + 1)
        if phonenumbers.is_possible_number(
            PhoneNumber(country_code=code, national_number=int("1" * n))
        )
    )


def _compile(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None
