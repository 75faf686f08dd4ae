"""SandboxState: seeded fault decisions, idempotency bookkeeping, stats and reset."""

from __future__ import annotations

import json

import pytest

from gateway.sandbox import FaultPlan, MemberBatch, SandboxState, SummaryCallback
from gateway.sandbox.control import ControlRejected, callback_from_json, plan_from_json
from gateway.sandbox.pipeline import retry_after_value, stored_json
from gateway.sandbox.state import FAULT_KINDS, TARGETS


def kinds_of(state: SandboxState, target: str, n: int) -> list[str | None]:
    return [state.begin(target, authorized=False).kind for _ in range(n)]


@pytest.mark.parametrize(
    "fields",
    [
        {"rate": 1.5},
        {"rate": -0.1},
        {"kinds": ()},
        {"kinds": ("418",)},
        {"retry_after": -1.0},
        {"latency_ms": float("nan")},
        {"first_n": -1},
    ],
)
def test_fault_plans_out_of_range_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        FaultPlan(**fields)  # type: ignore[arg-type]


def test_summary_callback_hides_its_key_and_checks_its_mode() -> None:
    callback = SummaryCallback(url="http://127.0.0.1:1/x", api_key="s3cret")
    assert "s3cret" not in repr(callback)
    with pytest.raises(ValueError):
        SummaryCallback(url="http://127.0.0.1:1/x", api_key="k", mode="lying")
    with pytest.raises(ValueError):
        SummaryCallback(url="ftp://host/x", api_key="k")


def test_first_n_faults_cycle_the_kinds_then_stop() -> None:
    state = SandboxState()
    state.set_faults("fraud", FaultPlan(first_n=5, kinds=("429", "drop")))
    assert kinds_of(state, "fraud", 7) == ["429", "drop", "429", "drop", "429", None, None]
    assert kinds_of(state, "point-program", 2) == [None, None]
    assert state.stats()["fraud"]["faults"] == {
        "429": 3,
        "500": 0,
        "503": 0,
        "timeout": 0,
        "drop": 2,
    }


def test_setting_a_plan_again_restarts_first_n() -> None:
    state = SandboxState()
    plan = FaultPlan(first_n=1)
    state.set_faults("*", plan)
    assert kinds_of(state, "fraud", 2) == ["500", None]
    state.set_faults("fraud", plan)
    assert kinds_of(state, "fraud", 2) == ["500", None]
    assert kinds_of(state, "google-datamanager", 1) == ["500"]


def test_fault_rate_is_seeded_and_statistically_right() -> None:
    def draw(seed: int) -> list[str | None]:
        state = SandboxState(seed=seed)
        state.set_faults("google-datamanager", FaultPlan(rate=0.2, kinds=FAULT_KINDS))
        return kinds_of(state, "google-datamanager", 5000)

    first = draw(3)
    assert first == draw(3)
    assert first != draw(4)
    faulted = [k for k in first if k is not None]
    assert 900 < len(faulted) < 1100  # 1000 expected; sd ~28
    assert set(faulted) == set(FAULT_KINDS)


def test_ids_do_not_shift_fault_draws() -> None:
    a, b = SandboxState(seed=1), SandboxState(seed=1)
    for state in (a, b):
        state.set_faults("fraud", FaultPlan(rate=0.5))
    for _ in range(10):
        b.new_request_id()
    assert kinds_of(a, "fraud", 50) == kinds_of(b, "fraud", 50)


def test_unknown_target_is_refused() -> None:
    state = SandboxState()
    with pytest.raises(ValueError):
        state.set_faults("google", FaultPlan())
    with pytest.raises(ValueError):
        state.accepted("*")


def test_replay_counts_duplicates_and_keeps_the_first_record() -> None:
    state = SandboxState()
    first = stored_json(200, {"requestId": state.new_request_id()})
    batch = MemberBatch("ingest", bytes(range(16)))
    assert state.replay("google-datamanager", "k1") is None
    state.accept("google-datamanager", "k1", first, batch, {"ingested_members": 2})
    assert state.replay("google-datamanager", "k1") == first
    assert state.replay("google-datamanager", None) is None
    state.accept("google-datamanager", None, first, batch, {"ingested_members": 2})
    stats = state.stats()["google-datamanager"]
    assert (stats["accepted"], stats["duplicates"], stats["unkeyed"]) == (2, 1, 1)
    assert stats["ingested_members"] == 4
    assert state.accepted("google-datamanager") == {"k1": batch}
    assert state.member_counts("ingest") == {bytes(range(8)): 2, bytes(range(8, 16)): 2}
    assert state.member_counts("remove") == {}


def test_stats_are_json_and_reset_forgets_all_but_faults_and_callback() -> None:
    state = SandboxState(seed=9)
    state.set_faults("fraud", FaultPlan(first_n=1))
    state.summary_callback = SummaryCallback(url="http://127.0.0.1:1/s", api_key="key-7f3a")
    first_id = state.new_request_id()
    state.begin("fraud", authorized=True)
    state.record_summary_status("202")
    stats = json.loads(json.dumps(state.stats()))
    assert set(stats) == set(TARGETS)
    assert stats["fraud"]["with_authorization"] == 1
    assert stats["point-program"]["summary_statuses"] == {"202": 1}
    assert "key-7f3a" not in json.dumps(stats)
    state.reset()
    assert state.stats()["fraud"]["requests"] == 0
    assert state.new_request_id() == first_id  # re-seeded
    assert state.faults("fraud") == FaultPlan(first_n=1)
    assert state.summary_callback is not None
    assert kinds_of(state, "fraud", 1) == ["500"]  # first_n counts again from the reset


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert [retry_after_value(s) for s in (0, 0.2, 1.0, 1.5, 30)] == ["0", "1", "1", "2", "30"]


def test_control_bodies() -> None:
    target, plan = plan_from_json({"target": "*", "kinds": [429, "drop"], "rate": 1, "first_n": 2})
    assert target == "*"
    assert plan == FaultPlan(rate=1.0, kinds=("429", "drop"), first_n=2)
    bad_bodies = [
        [],
        {"target": "fraud", "bogus": 1},
        {"rate": 0.1},
        {"target": "fraud", "first_n": 1.5},
        {"target": "fraud", "kinds": "500"},
        {"target": "fraud", "rate": "1"},
        {"target": "fraud", "kinds": ["404"]},
    ]
    for bad in bad_bodies:
        with pytest.raises(ControlRejected):
            plan_from_json(bad)
    callback = callback_from_json({"url": "http://127.0.0.1:9/s", "api_key": "k", "delay_s": 1})
    assert callback.delay_s == 1.0
    with pytest.raises(ControlRejected):
        callback_from_json({"url": "http://127.0.0.1:9/s"})
