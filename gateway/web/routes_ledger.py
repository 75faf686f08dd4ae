"""The transfer log for auditors (role compliance): checkpoints, the verifier key, entries and
RFC 9162 proofs, in the shapes an independent verifier expects.

Proofs do not fix a tree size by themselves (RFC 9162 §2.1.3.2): a client takes the size and
root from a signed checkpoint and asks for proofs against exactly that size.
"""

from __future__ import annotations

import base64

from aiohttp import web
from pydantic import BaseModel

from gateway.errors import FieldError, NotFound, ValidationFailed
from gateway.ledger.store import StoredCheckpoint
from gateway.models import Role
from gateway.web.endpoints import Caller, Endpoint, QueryParam
from gateway.web.problems import model_response
from gateway.web.services import SERVICES

COMPLIANCE = frozenset({Role.COMPLIANCE})
MAX_ENTRIES_PAGE = 1000
COUNT_SCHEMA = {"type": "integer", "minimum": 0}


class LedgerEntry(BaseModel):
    index: int
    leaf: str | None  # base64 of the canonical JSON; null once the content was purged
    leaf_hash: str  # base64


class EntriesPage(BaseModel):
    entries: list[LedgerEntry]


class Proof(BaseModel):
    hashes: list[str]  # base64, RFC 9162 §2.1.3 / §2.1.4 order


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


MAX_DIGITS = 20  # 2^64 - 1, the largest tree size a checkpoint may name (docs/ledger.md §3.1)


def parse_count(raw: str) -> int | None:
    """A non-negative integer written as a checkpoint writes a tree size (docs/ledger.md
    §3.1): ASCII decimal digits, no sign, no spaces, no leading zero. None for anything else,
    such as "+1", " 1", "1_0", "01" or a non-ASCII digit ("١"), all of which int() accepts;
    one spelling per value, at most MAX_DIGITS digits."""
    if not 0 < len(raw) <= MAX_DIGITS or not raw.isascii() or not raw.isdigit():
        return None
    if raw[0] == "0" and raw != "0":
        return None
    return int(raw)


def int_param(request: web.Request, name: str, default: int | None = None) -> int:
    """A non-negative integer query parameter (`parse_count`), required unless a default is
    given. Raises ValidationFailed naming the parameter."""
    raw = request.query.get(name)
    value = default if raw is None else parse_count(raw)
    if value is None:
        raise ValidationFailed(
            f"query parameter {name} must be a non-negative integer",
            errors=[FieldError.query(name, "a non-negative integer in ASCII digits is required")],
        )
    return value


def _too_large(name: str, value: int, size: int) -> ValidationFailed:
    return ValidationFailed(
        f"{name} {value} is larger than the log, which holds {size} entries",
        errors=[FieldError.query(name, f"at most {size}, the log's size")],
    )


def note_response(checkpoint: StoredCheckpoint) -> web.Response:
    return web.Response(text=checkpoint.note, content_type="text/plain", charset="utf-8")


async def get_checkpoint(request: web.Request, caller: Caller) -> web.StreamResponse:
    checkpoint = await request.app[SERVICES].ledger.latest_checkpoint()
    if checkpoint is None:
        raise NotFound("no checkpoint has been made yet; POST to this endpoint to make one")
    return note_response(checkpoint)


async def post_checkpoint(request: web.Request, caller: Caller) -> web.StreamResponse:
    return note_response(await request.app[SERVICES].ledger.checkpoint())


async def get_key(request: web.Request, caller: Caller) -> web.StreamResponse:
    vkey = request.app[SERVICES].ledger.verifier_key()
    return web.Response(text=vkey + "\n", content_type="text/plain", charset="utf-8")


async def get_entries(request: web.Request, caller: Caller) -> web.StreamResponse:
    start, end = int_param(request, "start"), int_param(request, "end")
    store = request.app[SERVICES].store
    size = await store.ledger_size()
    if end <= start:
        raise ValidationFailed(
            "end is the index after the last entry wanted: it must be greater than start",
            errors=[FieldError.query("end", f"more than {start}")],
        )
    if start >= size:
        raise ValidationFailed(
            f"the log holds {size} entries: start must be below that",
            errors=[FieldError.query("start", f"less than {size}")],
        )
    # As RFC 9162 §5.6 (RFC 6962 §4.6) get-entries: a page is cut at MAX_ENTRIES_PAGE and at
    # the log's end, never refused for asking more; a client goes on from the last index.
    leaves = await store.ledger_leaves(start, min(end, size, start + MAX_ENTRIES_PAGE))
    entries = [
        LedgerEntry(
            index=lf.index,
            leaf=b64(lf.leaf) if lf.leaf is not None else None,
            leaf_hash=b64(lf.leaf_hash),
        )
        for lf in leaves
    ]
    return model_response(EntriesPage(entries=entries))


async def get_inclusion(request: web.Request, caller: Caller) -> web.StreamResponse:
    index, size = int_param(request, "index"), int_param(request, "size")
    services = request.app[SERVICES]
    try:
        hashes = await services.ledger.inclusion_proof(index, size)
    except ValueError as exc:  # which parameter: only now, so a proof stays one round trip
        if size > (logged := await services.store.ledger_size()):
            raise _too_large("size", size, logged) from exc
        raise ValidationFailed(
            f"no inclusion proof for index {index} in a tree of size {size}",
            errors=[FieldError.query("index", f"less than size ({size})")],
        ) from exc
    return model_response(Proof(hashes=[b64(h) for h in hashes]))


async def get_consistency(request: web.Request, caller: Caller) -> web.StreamResponse:
    old, new = int_param(request, "from"), int_param(request, "to")
    services = request.app[SERVICES]
    try:
        hashes = await services.ledger.consistency_proof(old, new)
    except ValueError as exc:  # which parameter: only now, so a proof stays one round trip
        if new > (logged := await services.store.ledger_size()):
            raise _too_large("to", new, logged) from exc
        raise ValidationFailed(
            f"no consistency proof from {old} to {new}: from is the older, smaller size",
            errors=[FieldError.query("from", f"at most to ({new})")],
        ) from exc
    return model_response(Proof(hashes=[b64(h) for h in hashes]))


_TEXT = "text/plain"
ENDPOINTS = [
    Endpoint(
        method="GET",
        path="/v1/ledger/checkpoint",
        handler=get_checkpoint,
        tag="ledger",
        summary="The latest signed checkpoint (C2SP tlog-checkpoint in a signed note)",
        roles=COMPLIANCE,
        response_media=_TEXT,
    ),
    Endpoint(
        method="POST",
        path="/v1/ledger/checkpoint",
        handler=post_checkpoint,
        tag="ledger",
        summary="Sign a checkpoint covering every entry so far, and return it",
        roles=COMPLIANCE,
        response_media=_TEXT,
    ),
    Endpoint(
        method="GET",
        path="/v1/ledger/key",
        handler=get_key,
        tag="ledger",
        summary="The log's verifier key in signed-note form (name+keyid+base64key)",
        roles=COMPLIANCE,
        response_media=_TEXT,
    ),
    Endpoint(
        method="GET",
        path="/v1/ledger/entries",
        handler=get_entries,
        tag="ledger",
        summary="Log entries [start, end): base64 canonical JSON leaves (RFC 8785)",
        description=(
            "The entries from start, in index order, each with its leaf (base64 of its RFC "
            "8785 canonical JSON; null once purged after retain_until) and leaf hash. As RFC "
            "9162 §5.6 get-entries, a page holds at most "
            f"{MAX_ENTRIES_PAGE} entries and stops at the log's end: a request for more "
            "answers the first ones, and the client continues from the index after the last "
            "it received. 422 when end <= start or start is not below the log's size."
        ),
        roles=COMPLIANCE,
        response_model=EntriesPage,
        query=(
            QueryParam("start", "first index", COUNT_SCHEMA, required=True),
            QueryParam(
                "end", "index after the last wanted (exclusive)", COUNT_SCHEMA, required=True
            ),
        ),
        example_query={"start": "0", "end": "1"},
    ),
    Endpoint(
        method="GET",
        path="/v1/ledger/proofs/inclusion",
        handler=get_inclusion,
        tag="ledger",
        summary="RFC 9162 §2.1.3 inclusion proof of leaf `index` in the tree of `size`",
        roles=COMPLIANCE,
        response_model=Proof,
        query=(
            QueryParam("index", "leaf index", COUNT_SCHEMA, required=True),
            QueryParam("size", "tree size, from a signed checkpoint", COUNT_SCHEMA, required=True),
        ),
        example_query={"index": "0", "size": "1"},
    ),
    Endpoint(
        method="GET",
        path="/v1/ledger/proofs/consistency",
        handler=get_consistency,
        tag="ledger",
        summary="RFC 9162 §2.1.4 consistency proof between two tree sizes",
        roles=COMPLIANCE,
        response_model=Proof,
        query=(
            QueryParam("from", "older tree size", COUNT_SCHEMA, required=True),
            QueryParam("to", "newer tree size", COUNT_SCHEMA, required=True),
        ),
        example_query={"from": "0", "to": "1"},
    ),
]
