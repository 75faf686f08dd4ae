"""Local simulators of the three partner APIs the gateway delivers to, on real sockets.

- `google-datamanager`: Google's Data Manager API v1 `audienceMembers:ingest` / `:remove`,
  validated against the API's discovery document (`google`, `google_rules`, `discovery`);
- `fraud`: a fraud-scoring provider, a wire format this project defines (`fraud`);
- `point-program`: an attribute-estimation recipient that takes a delimited file and posts back
  a statistical summary (`point_program`, `uploads`).

Each can be made to misbehave (429 / 500 / 503 with Retry-After, hangs, dropped connections,
latency) from a seeded `FaultPlan`, deduplicates by `Idempotency-Key` and counts what it
accepted, so tests can prove that every record arrived exactly once. `gateway serve` mounts
`make_sandbox_app(state)` at `/sandbox`; `gateway sandbox` runs it alone.
"""

from gateway.sandbox.app import make_sandbox_app, run_sandbox, sandbox_server
from gateway.sandbox.discovery import DiscoveryDocument, DiscoveryError, SchemaViolation
from gateway.sandbox.members import MemberBatch
from gateway.sandbox.state import (
    FAULT_KINDS,
    TARGETS,
    FaultPlan,
    SandboxState,
    SummaryCallback,
)

__all__ = [
    "FAULT_KINDS",
    "TARGETS",
    "DiscoveryDocument",
    "DiscoveryError",
    "FaultPlan",
    "MemberBatch",
    "SandboxState",
    "SchemaViolation",
    "SummaryCallback",
    "make_sandbox_app",
    "run_sandbox",
    "sandbox_server",
]
