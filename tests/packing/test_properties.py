"""Property tests (hypothesis) of the packing invariants, on random document lengths."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wlb.cost_model import CostModel
from wlb.packing import build_packer
from wlb.packing.ledger import TokenLedger
from wlb.packing.schedule import PlanSchedule

COST = CostModel(attn_coef=1 / 64, linear_coef=1.0)
SEQ, N = 64, 4
#: "wlb-match": the WLB packer with the experimental match release (wlb.packing.release)
PACKERS = ("megatron", "fixed-greedy", "wlb", "wlb-paper", "wlb-match")
lengths_st = st.lists(st.integers(1, 3 * SEQ), min_size=1, max_size=120)
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _packer(name: str):
    kw = {"outlier_thresholds": [48, 96]} if name.startswith("wlb") else {}
    if name == "wlb-match":
        name, kw = "wlb", kw | {"release": "match", "max_wait": 3}
    return build_packer(name, num_microbatches=N, seq_length=SEQ, cost_model=COST, **kw)


def _schedule(lengths, name: str, seed: int) -> PlanSchedule:
    return PlanSchedule(lengths, _packer(name), 2, shuffle=True, seed=seed,
                        balance_dp=name != "megatron", wrap_epochs=False)


@FAST
@given(lengths=lengths_st, name=st.sampled_from(PACKERS), seed=st.integers(0, 5))
def test_every_token_lands_in_exactly_one_micro_batch_never_over_s_max(lengths, name, seed):
    schedule = _schedule(lengths, name, seed)
    ledger = TokenLedger()
    while (plan := schedule.next_plan()) is not None:
        ledger.consume(schedule.last_pieces)
        assert len(plan.microbatches) == N
        assert sorted(plan.dp_ranks) == [0, 0, 1, 1]  # N / DP each
        for mb in plan.microbatches:
            assert sum(p.length for p in mb) <= schedule.packer.max_tokens
            ledger.train(mb)
    # raises on any token lost, repeated or overlapping; what is left is held by the packer
    out = ledger.check(schedule.packer.pending())
    assert out["consumed_tokens"] == sum(lengths)
    assert out["trained_tokens"] + out["pending_tokens"] == sum(lengths)


@FAST
@given(lengths=lengths_st, name=st.sampled_from(PACKERS), seed=st.integers(0, 5),
       kill=st.integers(0, 12))
def test_a_resumed_schedule_trains_the_same_pieces_exactly_once(lengths, name, seed, kill):
    """Killed after ``kill`` iterations and resumed from its (JSON) state, a schedule trains
    what the uninterrupted one trains, and the ledger over both halves closes exactly."""
    ref = _schedule(lengths, name, seed)
    want = []
    while (plan := ref.next_plan()) is not None:
        want.append(plan.digest())
    first = _schedule(lengths, name, seed)
    ledger = TokenLedger()
    got = []
    for _ in range(kill):
        plan = first.next_plan()
        if plan is None:
            break
        ledger.consume(first.last_pieces)
        for mb in plan.microbatches:
            ledger.train(mb)
        got.append(plan.digest())
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint stores
    second = _schedule(lengths, name, seed)
    second.load_state_dict(state)
    while (plan := second.next_plan()) is not None:
        ledger.consume(second.last_pieces)
        for mb in plan.microbatches:
            ledger.train(mb)
        got.append(plan.digest())
    assert got == want
    ledger.check(second.packer.pending())
