"""All mutable state of one sandbox: fault plans, counters, and what each partner accepted.

Every partner request goes through the same bookkeeping (see `pipeline`):

1. `begin()` counts it and decides, from the target's `FaultPlan`, its added latency and whether
   it is faulted. A faulted request is answered with the fault and never processed.
2. A request the simulator refuses (400, 413, 415) is counted by `reject()`.
3. A valid request carrying an `Idempotency-Key` already accepted for this target is answered by
   `replay()` with the very response the first one got, and counted as a duplicate only.
4. Otherwise `accept()` records its response under its key (or counts it as unkeyed), what it
   carried (`accepted(target)`), and its target-specific counts (members, rows, checks).

Randomness comes only from two `random.Random` seeded from `seed` (house rule 2): one draws
faults, the other the ids the partners hand out, so a run is reproducible and drawing an id
never shifts which request is faulted.
"""

from __future__ import annotations

import math
import random
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.sandbox.discovery import DiscoveryDocument
from gateway.sandbox.members import MemberBatch

GOOGLE, FRAUD, POINT_PROGRAM = "google-datamanager", "fraud", "point-program"
TARGETS = (GOOGLE, FRAUD, POINT_PROGRAM)
ALL_TARGETS = "*"
FAULT_KINDS = ("429", "500", "503", "timeout", "drop")
SUMMARY_MODES = ("ok", "small_cells", "per_person")
DEFAULT_DISCOVERY = Path(__file__).with_name("google-datamanager-v1.discovery.json")

# Counters each target reports besides the common ones, all starting at zero.
_TARGET_COUNTERS: dict[str, tuple[str, ...]] = {
    GOOGLE: ("ingested_members", "removed_members", "validate_only"),
    FRAUD: ("checks",),
    POINT_PROGRAM: ("uploads", "rows", "summaries_posted"),
}


@dataclass(frozen=True)
class FaultPlan:
    """How a target misbehaves. Raises ValueError on construction when a field is out of range."""

    rate: float = 0.0  # probability that a request is faulted, 0..1
    kinds: tuple[str, ...] = ("500",)  # drawn uniformly; cycled for the first_n requests
    retry_after: float = 1.0  # seconds, sent as Retry-After on 429 and 503
    latency_ms: float = 0.0  # added to every request of the target, faulted or not
    timeout_s: float = 30.0  # how long a "timeout" fault hangs before answering 504
    first_n: int = 0  # additionally fault the first N requests after the plan is set

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be between 0 and 1")
        if not self.kinds or any(kind not in FAULT_KINDS for kind in self.kinds):
            raise ValueError(f"kinds must be a non-empty list of {', '.join(FAULT_KINDS)}")
        numbers = (self.retry_after, self.latency_ms, self.timeout_s, self.first_n)
        if any(not math.isfinite(n) or n < 0 for n in numbers):
            raise ValueError("retry_after, latency_ms, timeout_s and first_n must be >= 0")


@dataclass(frozen=True)
class SummaryCallback:
    """Where the point-program recipient posts its statistical summary after an upload.

    mode "ok" is the honest recipient; "small_cells" and "per_person" send a summary the gateway
    must refuse (cells under the minimum count, or per-person rows). Raises ValueError."""

    url: str
    api_key: str = field(repr=False)  # a secret: never in a repr, a log or the stats
    delay_s: float = 0.0
    mode: str = "ok"

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("url must be an http(s) URL")
        if self.mode not in SUMMARY_MODES:
            raise ValueError(f"mode must be one of {', '.join(SUMMARY_MODES)}")
        if not math.isfinite(self.delay_s) or self.delay_s < 0:
            raise ValueError("delay_s must be >= 0")


@dataclass(frozen=True)
class StoredResponse:
    """A response as first sent, replayed byte for byte to a duplicate request."""

    status: int
    body: bytes
    content_type: str = "application/json"


@dataclass(frozen=True)
class FaultDecision:
    kind: str | None  # None: not faulted
    latency_s: float
    plan: FaultPlan


@dataclass
class _Target:
    """The counters and records of one target."""

    name: str
    since_plan: int = 0  # requests since the fault plan was set: first_n counts these
    requests: int = 0
    with_authorization: int = 0
    accepted: int = 0
    duplicates: int = 0
    unkeyed: int = 0
    rejected: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    responses: dict[str, StoredResponse] = field(default_factory=dict)
    records: dict[str, Any] = field(default_factory=dict)
    unkeyed_records: list[Any] = field(default_factory=list)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": self.requests,
            "with_authorization": self.with_authorization,
            "faults": {kind: self.faults[kind] for kind in FAULT_KINDS},
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "unkeyed": self.unkeyed,
            "rejected": self.rejected,
            "keys_accepted": len(self.responses),
        }
        out.update({name: self.counts[name] for name in _TARGET_COUNTERS[self.name]})
        if self.name == POINT_PROGRAM:
            out["summary_statuses"] = dict(sorted(self.statuses.items()))
        return out


class SandboxState:
    """Faults, counters and received data of the three simulated partners.

    Not thread-safe: every method runs on the event loop (parsing may run in a thread, but
    its result is recorded back on the loop). Raises DiscoveryError when the discovery document
    at `discovery_path` (default: the copy shipped in this package) is unusable."""

    def __init__(
        self, *, seed: int = 0, min_cell_count: int = 10, discovery_path: Path | None = None
    ) -> None:
        self.seed = seed
        self.min_cell_count = min_cell_count
        self.discovery = DiscoveryDocument.load(discovery_path or DEFAULT_DISCOVERY)
        self.summary_callback: SummaryCallback | None = None
        self._plans: dict[str, FaultPlan] = {}
        self._targets = {name: _Target(name) for name in TARGETS}
        self._reseed()

    def _reseed(self) -> None:
        # String seeds hash deterministically (random.seed version 2), unlike hash() of a str.
        # Not for security: these only pick faults and make up partner-side ids.
        self._fault_random = random.Random(f"faults:{self.seed}")  # noqa: S311
        self._id_random = random.Random(f"ids:{self.seed}")  # noqa: S311

    # Faults -------------------------------------------------------------------------------------

    def set_faults(self, target: str, faults: FaultPlan) -> None:
        """Make `target` (or "*": all three) misbehave as `faults` says, counting first_n from
        now. Raises ValueError for an unknown target."""
        for name in self._resolve(target):
            self._plans[name] = faults
            self._targets[name].since_plan = 0

    def clear_faults(self) -> None:
        self._plans.clear()

    def faults(self, target: str) -> FaultPlan | None:
        """The plan in force for `target`. Raises ValueError for an unknown target."""
        return self._plans.get(self._one(target))

    def _resolve(self, target: str) -> tuple[str, ...]:
        return TARGETS if target == ALL_TARGETS else (self._one(target),)

    def _one(self, target: str) -> str:
        if target not in self._targets:
            raise ValueError(f"target must be one of {', '.join(TARGETS)}")
        return target

    # The request pipeline -----------------------------------------------------------------------

    def begin(self, target: str, *, authorized: bool) -> FaultDecision:
        """Count one arriving request of `target` and decide its latency and fault."""
        counters = self._targets[target]
        counters.requests += 1
        counters.with_authorization += authorized
        plan = self._plans.get(target, _NO_FAULTS)
        index = counters.since_plan
        counters.since_plan += 1
        kind: str | None = None
        if index < plan.first_n:
            kind = plan.kinds[index % len(plan.kinds)]
        elif plan.rate > 0 and self._fault_random.random() < plan.rate:
            kind = plan.kinds[self._fault_random.randrange(len(plan.kinds))]
        if kind is not None:
            counters.faults[kind] += 1
        return FaultDecision(kind=kind, latency_s=plan.latency_ms / 1000.0, plan=plan)

    def reject(self, target: str) -> None:
        """Count a request the simulator refused (malformed, invalid, too large)."""
        self._targets[target].rejected += 1

    def replay(self, target: str, key: str | None) -> StoredResponse | None:
        """The response an earlier accepted request with this key got, counting a duplicate;
        None when the key is new (or absent)."""
        if key is None:
            return None
        counters = self._targets[target]
        stored = counters.responses.get(key)
        if stored is not None:
            counters.duplicates += 1
        return stored

    def accept(
        self,
        target: str,
        key: str | None,
        response: StoredResponse,
        record: Any,
        counts: Mapping[str, int],
    ) -> None:
        """Record an accepted request: its response (replayed to later duplicates), what it
        carried, and its counts."""
        counters = self._targets[target]
        counters.accepted += 1
        if key is None:
            counters.unkeyed += 1
            if target == GOOGLE:  # member_counts needs them; other targets' would only grow
                counters.unkeyed_records.append(record)
        else:
            counters.responses[key] = response
            counters.records[key] = record
        counters.counts.update(counts)

    def count(self, target: str, name: str, n: int = 1) -> None:
        """Add to a target-specific counter (e.g. validate_only, summaries_posted)."""
        self._targets[target].counts[name] += n

    def record_summary_status(self, status: str) -> None:
        """Count one summary callback by its outcome: the HTTP status, or "error"."""
        self._targets[POINT_PROGRAM].statuses[status] += 1
        self._targets[POINT_PROGRAM].counts["summaries_posted"] += 1

    def new_request_id(self) -> str:
        """A UUID (version 4 layout) drawn from the seeded id generator."""
        return str(uuid.UUID(int=self._id_random.getrandbits(128), version=4))

    def new_token(self, prefix: str, nbytes: int = 8) -> str:
        """`prefix` + 2*nbytes hex digits from the seeded id generator, e.g. fp_1a2b..."""
        return prefix + self._id_random.getrandbits(8 * nbytes).to_bytes(nbytes, "big").hex()

    # Reading it back ----------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """JSON-able counters per target (no per-key data: see `accepted`)."""
        return {name: counters.stats() for name, counters in self._targets.items()}

    def accepted(self, target: str) -> dict[str, Any]:
        """Idempotency key -> what the first accepted request with that key carried: for
        google-datamanager a `MemberBatch`, for fraud and point-program a small dict. Unkeyed
        requests are not listed (they have no key): `member_counts` includes them. Raises
        ValueError for an unknown target."""
        return dict(self._targets[self._one(target)].records)

    def member_counts(self, operation: str = "ingest") -> Counter[bytes]:
        """The multiset of member digests accepted by `operation` ("ingest" or "remove") over
        all accepted requests, keyed or not: each record sent exactly once counts 1."""
        counters = self._targets[GOOGLE]
        counts: Counter[bytes] = Counter()
        for batch in (*counters.records.values(), *counters.unkeyed_records):
            if isinstance(batch, MemberBatch) and batch.operation == operation:
                counts.update(batch)
        return counts

    def reset(self) -> None:
        """Forget counters, received data and first_n progress; re-seed. Faults and the
        summary callback stay."""
        self._targets = {name: _Target(name) for name in TARGETS}
        self._reseed()


_NO_FAULTS = FaultPlan()
