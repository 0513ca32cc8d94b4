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
from tests.helpers.lm_runs import (
    ENTRY,
    assert_same_losses,
    json_losses,
    lm_losses,
    lm_output,
    per_iteration,
)

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


@pytest.mark.dist
@pytest.mark.slow
def test_with_dropout_at_dp2_a_resume_is_exact(corpus, data_cache, tmp_path):
    """Dropout on at DP 2: WLB's micro-batches advance each DP rank's RNG differently, and
    megatron checkpoints every DP rank's RNG state only with --data-parallel-random-init, which
    WLB's packing turns on there (one line says so): the resumed iterations' losses are the
    uninterrupted run's, bit for bit on one machine (without it: 5e-4 apart). The losses are
    the ``--log-json`` rows' (megatron's first printed line after a start averages over the
    iterations since, unlike the uninterrupted run's)."""
    flags = [*WLB, "--hidden-dropout", "0.1"]
    ckpt, logs = str(tmp_path / "ckpt"), [str(tmp_path / f"{k}.jsonl") for k in "fab"]
    lm_output(ENTRY, 2, [*flags, "--log-json", logs[0]], corpus, data_cache)
    lm_output(ENTRY, 2, [*flags, "--save", ckpt, "--save-interval", "2", "--exit-interval",
                         "2", "--log-json", logs[1]], corpus, data_cache)
    out = lm_output(ENTRY, 2, [*flags, "--load", ckpt, "--log-json", logs[2]], corpus,
                    data_cache)
    full = json_losses(logs[0])
    assert {**json_losses(logs[1]), **json_losses(logs[2])} == full
    assert sorted(full) == [1, 2, 3, 4]
    assert "--data-parallel-random-init on: with dropout at DP > 1" in out


@pytest.mark.dist
@pytest.mark.slow
def test_a_run_saved_under_pp2_vpp2_resumes_at_cp2(corpus, data_cache, tmp_path):
    """megatron's torch_dist checkpoint reshards from a pipeline with virtual stages to CP 2 (4
    layers); WLB's replay gives the resumed leg the uninterrupted run's batches."""
    layers = ["--num-layers", "4"]
    vpp = ["--pipeline-model-parallel-size", "2", "--num-virtual-stages-per-pipeline-rank", "2"]
    ckpt = str(tmp_path / "ckpt")
    full = per_iteration(lm_losses(ENTRY, 2, [*WLB, *layers, *vpp], corpus, data_cache))
    lm_losses(ENTRY, 2, [*WLB, *layers, *vpp, "--save", ckpt, "--save-interval", "2",
                         "--exit-interval", "2"], corpus, data_cache)
    resumed = per_iteration(lm_losses(ENTRY, 2, [*WLB, *layers, *CP2, "--load", ckpt],
                                      corpus, data_cache))
    assert_same_losses(full[2:], resumed, REL, "PP 2 x VPP 2 uninterrupted vs resumed at CP 2",
                       (3, 4))
