"""API keys: minting, hashing, and authenticating `Authorization: Bearer KEY`.

A key is `gw_<client_id>_<secret>`. Only SHA-256(key) is stored; the secret has 256 bits of
entropy, so a plain hash (not a slow password hash) is the right tool, and the comparison is
constant-time (`hmac.compare_digest`) so response timing says nothing about the stored hash.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping
from datetime import datetime

from aiohttp import web

from gateway.contracts import PartnerContract
from gateway.errors import FieldError, Forbidden, Unauthorized
from gateway.models import ClientRecord, PartnerKind, Role
from gateway.web.services import SERVICES

_KEY_RE = re.compile(r"^gw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


def key_sha256(key: str) -> str:
    """SHA-256 of the key's bytes as sent: aiohttp decodes a header's non-UTF-8 bytes to
    surrogate escapes, which encode back to those bytes (an invalid key, not an error)."""
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def mint_client(
    *, name: str, role: Role, partners: tuple[str, ...], now: datetime
) -> tuple[ClientRecord, str]:
    """A new client and its API key (returned once, never stored)."""
    client_id = secrets.token_hex(8)
    key = f"gw_{client_id}_{secrets.token_urlsafe(32)}"
    record = ClientRecord(
        client_id=client_id,
        name=name,
        role=role,
        partners=partners,
        key_sha256=key_sha256(key),
        created_at=now,
    )
    return record, key


def client_partner_problems(
    role: Role, partners: tuple[str, ...], contracts: Mapping[str, PartnerContract]
) -> list[FieldError]:
    """What is wrong with a new client's partners: unknown ones, a sender without any, a
    recipient without exactly one, or whose partner posts no summaries (only attribute-export
    recipients do)."""
    errors = [
        FieldError(f"/partners/{i}", "unknown partner: no contract has this id")
        for i, p in enumerate(partners)
        if p not in contracts
    ]
    if role is Role.SENDER and not partners:
        errors.append(FieldError("/partners", "a sender must name the partners it sends to"))
    if role is Role.RECIPIENT and len(partners) != 1:
        # A recipient key is one partner's own credential: never shared between partners.
        errors.append(FieldError("/partners", "a recipient names exactly one partner"))
    elif role is Role.RECIPIENT and partners[0] in contracts:
        kind = contracts[partners[0]].kind
        if kind is not PartnerKind.ATTRIBUTE_EXPORT:
            detail = f"a {kind.value} partner posts no summaries: recipients are attribute_export"
            errors.append(FieldError("/partners/0", detail))
    return errors


def bearer_key(header: str | None) -> str:
    """The key from an Authorization header. Raises Unauthorized."""
    if not header:
        raise Unauthorized(
            "send an API key as `Authorization: Bearer KEY`",
            headers={"WWW-Authenticate": 'Bearer realm="gateway"'},
        )
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized(
            "the Authorization header must be `Bearer KEY`",
            headers={"WWW-Authenticate": 'Bearer realm="gateway", error="invalid_request"'},
        )
    return key.strip()


async def authenticate(request: web.Request) -> ClientRecord:
    """The active client whose key the request carries. Raises Unauthorized."""
    key = bearer_key(request.headers.get("Authorization"))
    match = _KEY_RE.match(key)
    client = None
    if match:
        client = await request.app[SERVICES].store.get_client(match.group(1))
    # Compare against a dummy hash when the client is unknown: same work either way.
    expected = client.key_sha256 if client else "0" * 64
    valid = hmac.compare_digest(key_sha256(key), expected)
    if client is None or not valid or client.revoked_at is not None:
        raise Unauthorized(
            "the API key is not valid",
            headers={"WWW-Authenticate": 'Bearer realm="gateway", error="invalid_token"'},
        )
    return client


# Roles that act only for the partners their client lists: a sender sends to them, a
# recipient is one partner's own credential.
PARTNER_SCOPED_ROLES = frozenset({Role.SENDER, Role.RECIPIENT})


def require_partner(client: ClientRecord | None, partner_id: str) -> None:
    """A sender acts only for the partners its client lists (issue: roles), a recipient only
    for its own partner. Raises Forbidden."""
    if client is None or client.role not in PARTNER_SCOPED_ROLES:
        return
    if partner_id not in client.partners:
        # The partner named in the request is not repeated: it is whatever the caller typed.
        raise Forbidden(
            f"this client acts for {', '.join(client.partners)} only, not the partner named"
        )
