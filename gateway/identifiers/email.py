"""`email` in the `google` profile.

Google's Data Manager API guide, "Format user data", email addresses: remove all whitespace,
lowercase, and for gmail.com and googlemail.com only, remove every period in the local part and
a `+` with everything after it. The design page adds Unicode NFC first and the shape check: one
`local@domain` with a dot in the domain, else `invalid_email`.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

from gateway.identifiers.digest import sha256 as _sha256
from gateway.identifiers.results import Reason, Rejected, rejection

KIND = "email"
# Only Google's own consumer domains fold dots and +tags: Gmail ignores them when delivering,
# other providers do not (design page; Google's guide).
GMAIL_DOMAINS: frozenset[str] = frozenset({"gmail.com", "googlemail.com"})

_PLAIN, _GMAIL, _BAD = "plain", "gmail", "bad"  # hash_emails: how a domain is handled
_MAX_DOMAINS = 100_000  # bound on hash_emails' per-call domain cache

_EMPTY = rejection(KIND, Reason.EMPTY)
_INVALID = rejection(KIND, Reason.INVALID_EMAIL)
_NFC_ROUNDS = 4


def normalize_email(value: str) -> str | Rejected:
    """The normalized address, or the reason it is not one. Raises nothing."""
    if value.isascii():
        # ASCII is already NFC and lowercases to ASCII: the common case skips unicodedata.
        text = "".join(value.split()).lower()
    else:
        folded = _fold_unicode(value)
        if folded is None:
            return _INVALID
        text = folded
    return _check(text)


def _fold_unicode(value: str) -> str | None:
    """NFC, no whitespace, lowercase; None if the text cannot be encoded (lone surrogates)."""
    text = value
    # Removing whitespace can join a base letter to a combining mark, and lowercasing can leave
    # a decomposed sequence: repeat until stable, so normalizing twice changes nothing.
    for _ in range(_NFC_ROUNDS):
        folded = unicodedata.normalize("NFC", "".join(text.split()).lower())
        if folded == text:
            break
        text = folded
    try:
        text.encode()
    except UnicodeEncodeError:
        return None
    return text


def _check(text: str) -> str | Rejected:
    """Shape check and the Gmail folding on text that is already NFC, spaceless, lowercase."""
    if not text:
        return _EMPTY
    if text.count("@") != 1:
        return _INVALID
    local, _, domain = text.partition("@")
    if not local or not _domain_ok(domain):
        return _INVALID
    if domain in GMAIL_DOMAINS:
        local = local.partition("+")[0].replace(".", "")
        if not local:
            return _INVALID
        if not local.isascii():
            # Dropping a period can join a letter to the combining mark that followed it.
            local = unicodedata.normalize("NFC", local)
        return f"{local}@{domain}"
    return text


def _domain_ok(domain: str) -> bool:
    # "a dot in the domain with non-empty labels around it": no leading, trailing or double dot.
    return "." in domain and domain[0] != "." and domain[-1] != "." and ".." not in domain


def _domain_shape(domain: str) -> str:
    """How `_check` treats an address with this domain: _PLAIN, _GMAIL or _BAD."""
    if "@" in domain or not _domain_ok(domain):
        return _BAD
    return _GMAIL if domain in GMAIL_DOMAINS else _PLAIN


def hash_emails(values: Iterable[str]) -> list[str | Rejected]:
    """The SHA-256 (hex) of each normalized address, or its rejection, in order.

    Equal to `normalize_email` then SHA-256 for every input (a property test holds them
    together); the loop inlines the ASCII case, and returns strings rather than result tuples,
    which the garbage collector would otherwise keep re-scanning as the list grows (a frozen
    result object per value made the loop about twice as slow).
    """
    out: list[str | Rejected] = []
    append = out.append
    sha256 = _sha256
    # A list holds few distinct domains: judge each once (the check and the Gmail test cost
    # more than the hash of the address itself).
    shapes: dict[str, str] = {}
    for value in values:
        if not value.isascii():
            result = normalize_email(value)
            append(result if isinstance(result, Rejected) else sha256(result.encode()).hexdigest())
            continue
        # ASCII is NFC already. split() drops all whitespace; most values are one part.
        parts = value.split()
        text = (parts[0] if len(parts) == 1 else "".join(parts)).lower()
        local, _, domain = text.partition("@")
        shape = shapes.get(domain)
        if shape is None:
            shape = _domain_shape(domain)
            if len(shapes) < _MAX_DOMAINS:
                shapes[domain] = shape
        if shape is _PLAIN and local:
            append(sha256(text.encode()).hexdigest())
        elif shape is _GMAIL and local:
            local = local.partition("+")[0].replace(".", "")  # as in _check
            append(sha256(f"{local}@{domain}".encode()).hexdigest() if local else _INVALID)
        else:
            append(_INVALID if text else _EMPTY)
    return out


class EmailHasher:
    """`hash_emails` one value at a time, for callers that take values record by record: the
    same answer per value, each domain judged once across calls. Raises nothing."""

    __slots__ = ("_shapes",)

    def __init__(self) -> None:
        self._shapes: dict[str, str] = {}

    def __call__(self, value: str, _region: str | None = None) -> str | Rejected:
        """What is sent for `value`. An email reads the same in every region: a Hasher's
        sender takes one all the same."""
        # hash_emails' loop body (tests hold the two to normalize_email, value by value).
        if not value.isascii():
            result = normalize_email(value)
            return result if isinstance(result, Rejected) else _hex(result)
        parts = value.split()
        text = (parts[0] if len(parts) == 1 else "".join(parts)).lower()
        local, _, domain = text.partition("@")
        shape = self._shapes.get(domain)
        if shape is None:
            shape = _domain_shape(domain)
            if len(self._shapes) < _MAX_DOMAINS:
                self._shapes[domain] = shape
        if shape is _PLAIN and local:
            return _hex(text)
        if shape is _GMAIL and local:
            local = local.partition("+")[0].replace(".", "")  # as in _check
            return _hex(f"{local}@{domain}") if local else _INVALID
        return _INVALID if text else _EMPTY


def _hex(text: str) -> str:
    digest: str = _sha256(text.encode()).hexdigest()
    return digest
