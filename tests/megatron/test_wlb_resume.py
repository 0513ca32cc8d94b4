"""A resumed WLB run in Megatron-LM's loop trains as the uninterrupted one, under another layout.

megatron saves and loads the model, optimizer and RNG (its torch_dist checkpoint, resharded on
load); WLB's data resumes from ``args.iteration`` by replaying the plans before it (packing only:
the plans follow from the lengths and the seed alone, outlier queues included, so the replay is
exact under any layout). WLB's own packing with 'auto' outlier thresholds: saved at CP 2 after
iteration 2 (``--exit-interval``), resumed at TP 2; iterations 3 and 4 equal the run that went
through, and the two legs' ``--log-plans`` account for every document piece (trained once or
pending).
"""

from __future__ import annotations

import pytest

from tests.helpers.ledger import chain_ledger
from tests.helpers.lm_runs import ENTRY, assert_same_losses, lm_losses, per_iteration

REL = 1e-5
WLB = ["--wlb-packing", "wlb", "--micro-batch-size", "1", "--eod-mask-loss", "--train-iters", "4",
       "--wlb-cp-sharding", "per-doc"]
CP2 = ["--context-parallel-size", "2"]


@pytest.mark.dist
@pytest.mark.slow
def test_a_resumed_run_under_another_layout_trains_as_the_uninterrupted_one(
        corpus, data_cache, tmp_path):
    ckpt, plans = str(tmp_path / "ckpt"), [str(tmp_path / f"plans{k}.jsonl") for k in (1, 2)]
    full = per_iteration(lm_losses(ENTRY, 2, [*WLB, *CP2], corpus, data_cache))
    first = lm_losses(ENTRY, 2, [*WLB, *CP2, "--save", ckpt, "--save-interval", "2",
                                 "--exit-interval", "2", "--log-plans", plans[0]],
                      corpus, data_cache)
    assert [i for i, _ in first] == [1, 2]
    resumed = per_iteration(lm_losses(ENTRY, 2, [*WLB, "--tensor-model-parallel-size", "2",
                                                 "--load", ckpt, "--log-plans", plans[1]],
                                       corpus, data_cache))
    assert_same_losses(full[2:], resumed, REL, "uninterrupted vs resumed", (3, 4))
    # every document piece the packer took was trained exactly once, or is still pending
    chain_ledger(plans, [(1, 2), (3, 4)], 4)
