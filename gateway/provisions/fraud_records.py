"""What one fraud check writes to the transfer log, and when: record, deliver, record the
outcome (docs/architecture's flow, as customer-match uploads do).

- **Before the request leaves** (`announce`): the provision (APPI Art. 29), outcome `allowed`,
  with the SHA-256 of the exact request body. Durable before the first byte is sent, so a
  service that dies during the call leaves a provision in the log, never a transfer the log
  does not know of; the missing outcome says it is not known whether the provider got it.
- **After the call** (`settle`): an outcome entry referring to it (`delivered`: the provider
  answered; `failed`: a fallback after it was sent, with the reason) and, when the provider
  answered, its verdict as a receipt (Art. 30). Both in one append, before the answer.
- **A check whose request never left** (policy denial: `denied`; circuit open or gateway busy
  before the call: `failed`, no payload hash) is one provision entry with the reasons.

Every entry shares the check id as its transfer id.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gateway.contract_kinds import FRAUD_PURPOSE
from gateway.contracts import PartnerContract
from gateway.ledger.entries import Outcome, outcome_entry, to_record
from gateway.ledger.receipts import ReceiptEntries
from gateway.ledger.service import Ledger
from gateway.ledger.store import LeafRecord
from gateway.ledger.templates import TransferEntries
from gateway.policy import Decision
from gateway.provisions.fraud_answers import ProviderCall, policy_reasons, reason, sha256_hex

OPERATION = "score"  # the outcome entries' operation: POST {endpoint}/fraud/v1/scores


class CheckRecords:
    """The log entries of one check (module doc). Each method is one `Ledger.append` and
    raises StorageError when the log cannot take it."""

    def __init__(
        self,
        *,
        contract: PartnerContract,
        receipts: ReceiptEntries,
        ledger: Ledger,
        decision: Decision,
        check_id: str,
        now: datetime,
        subject_key: str,
        new_id: Callable[[], str],
        clock: Callable[[], datetime],
    ) -> None:
        self._contract = contract
        self._receipts = receipts
        self._ledger = ledger
        self._decision = decision
        self._check_id = check_id
        self._now = now
        self._key = subject_key
        self._new_id = new_id
        self._clock = clock
        self._provision: int | None = None  # its log index, once announced
        self._payload_sha256: str | None = None

    async def denied(self) -> None:
        """The policy refused: nothing leaves, the refusal is recorded (Art. 29, rule 7)."""
        await self._ledger.append([self._provision_entry(Outcome.DENIED, None, None)])

    async def announce(self, request: bytes) -> None:
        """The provision, before `request` is sent."""
        self._payload_sha256 = sha256_hex(request)
        entry = self._provision_entry(Outcome.ALLOWED, self._payload_sha256, None)
        self._provision = await self._ledger.append([entry])

    async def settle(self, call: ProviderCall) -> None:
        """What came of the check: an outcome and the receipt after an announced provision,
        or the one `failed` provision of a request that never left."""
        if self._provision is None:
            assert call.reason is not None, "a verdict comes only from a request that left"
            reasons = [*policy_reasons(self._decision), reason(call.reason)]
            await self._ledger.append([self._provision_entry(Outcome.FAILED, None, reasons)])
            return
        records = [self._outcome_entry(call)]
        if call.verdict is not None:
            receipt = self._receipts.record(
                entry_id=self._new_id(),
                transfer_id=self._check_id,
                time=self._clock(),
                subject_id=self._decision.subject_id,
                subject_key=self._key,
                payload_sha256=call.response_sha256,
            )
            records.append(receipt)
        await self._ledger.append(records)

    def _provision_entry(
        self, outcome: Outcome, payload_sha256: str | None, reasons: list[dict[str, str]] | None
    ) -> LeafRecord:
        # The provision's template is made once per partner and decision shape, not per check.
        entries = TransferEntries(
            contract=self._contract, outcome=outcome, transfer_id=self._check_id, time=self._now
        )
        return entries.record(
            self._decision,
            subject_key=self._key,
            payload_sha256=payload_sha256,
            reasons=reasons,
            entry_id=self._new_id(),
        )

    def _outcome_entry(self, call: ProviderCall) -> LeafRecord:
        # One entry: built directly (25 µs), not from an OutcomeEntries template (100 µs to
        # make, which pays back only over the thousands of entries of an upload's delivery).
        assert self._provision is not None
        delivered = call.verdict is not None
        entry = outcome_entry(
            contract=self._contract,
            purpose=FRAUD_PURPOSE,
            legal_basis=self._decision.legal_basis.value,
            outcome=Outcome.DELIVERED if delivered else Outcome.FAILED,
            operation=OPERATION,
            transfer_id=self._check_id,
            delivery_id=self._check_id,  # the Idempotency-Key the provider saw
            entry_id=self._new_id(),
            time=self._clock(),
            subject_id=self._decision.subject_id,
            subject_key=self._key,
            payload_sha256=self._payload_sha256,
            refers_to=self._provision,
            reasons=() if delivered or call.reason is None else (reason(call.reason),),
        )
        return to_record(entry)
