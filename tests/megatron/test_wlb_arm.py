"""WLB's arm of pretrain_gpt_wlb.py (its packer's micro-batches at Megatron-LM's hooks) trains
the same model as the stock arm, on every layout.

With ``--wlb-global-batch megatron`` WLB repacks stock Megatron's own global batch (the pieces of
its ``GPTDataset`` samples; no outlier delay), so each iteration trains the stock arm's tokens
in other micro-batches, sharded over CP by WLB, under the same per-token loss. The stock arm
masks documents (``--dataloader-inter-document-masking``) and ``--eod-mask-loss``: a document's
last token (its EOD) has no label in WLB's micro-batches (the next document is elsewhere), and
Megatron otherwise trains it against whatever document follows it in the sample.

Against the stock arm at 1 process: WLB at 1 process, CP 2 (adaptive sharding), TP 2 with
sequence parallelism, DP 2 with the distributed optimizer, full recompute; against the stock arm
on the same layout (megatron seeds each stage's initialisation by its rank): WLB at PP 2 x VPP
2, and a mixture of experts at PP 2 x EP 2. ``--use-cpu-initialization`` everywhere, so
that TP 2 starts from the 1-process weights.
"""

from __future__ import annotations

import pytest

from tests.helpers.lm_runs import ENTRY, assert_same_losses, lm_losses

REL = 1e-5
BOTH = ["--micro-batch-size", "1", "--eod-mask-loss", "--use-cpu-initialization"]
STOCK = ["--wlb-packing", "megatron", "--dataloader-inter-document-masking", *BOTH]
WLB = ["--wlb-packing", "wlb", "--wlb-global-batch", "megatron", "--wlb-outlier-thresholds",
       "none", *BOTH]
VPP = ["--pipeline-model-parallel-size", "2", "--num-layers", "4",
       "--num-virtual-stages-per-pipeline-rank", "2"]
LAYOUTS = {
    "1-process": (1, []),
    "cp2-adaptive": (2, ["--context-parallel-size", "2", "--wlb-cp-sharding", "adaptive"]),
    "tp2-sp": (2, ["--tensor-model-parallel-size", "2", "--sequence-parallel"]),
    "dp2-distopt": (2, ["--use-distributed-optimizer"]),
    "recompute": (1, ["--recompute-granularity", "full", "--recompute-method", "uniform",
                      "--recompute-num-layers", "1"]),
}
MOE = ["--num-experts", "2", "--moe-router-topk", "2", "--moe-token-dispatcher-type",
       "alltoall", "--disable-bias-linear", "--pipeline-model-parallel-size", "2",
       "--expert-model-parallel-size", "2"]

pytestmark = [pytest.mark.dist, pytest.mark.slow]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_wlb_trains_the_stock_arms_model(corpus, data_cache, layout):
    nproc, flags = LAYOUTS[layout]
    stock = lm_losses(ENTRY, 1, STOCK, corpus, data_cache)
    wlb = lm_losses(ENTRY, nproc, [*WLB, *flags], corpus, data_cache)
    assert_same_losses(stock, wlb, REL, f"stock arm vs WLB at {layout}")


def test_wlb_trains_the_stock_arms_model_at_pp2_vpp2(corpus, data_cache):
    stock = lm_losses(ENTRY, 2, [*STOCK, *VPP], corpus, data_cache)
    wlb = lm_losses(ENTRY, 2, [*WLB, *VPP], corpus, data_cache)
    assert_same_losses(stock, wlb, REL, "stock arm vs WLB at PP 2 x VPP 2")


def test_wlb_trains_the_stock_arms_mixture_of_experts_at_pp2_ep2(corpus, data_cache):
    """2 experts, top-2, megatron's all-to-all dispatcher over EP 2, at PP 2 (4 processes)."""
    stock = lm_losses(ENTRY, 4, [*STOCK, *MOE], corpus, data_cache)
    wlb = lm_losses(ENTRY, 4, [*WLB, *MOE], corpus, data_cache)
    assert_same_losses(stock, wlb, REL, "stock arm vs WLB, MoE at PP 2 x EP 2")


def test_validation_evaluates_the_stock_arms_samples(corpus, data_cache):
    """Both evaluate stock Megatron's valid samples, moving on between evaluations (iteration 2
    and the last); WLB at CP 2, per-doc."""
    evals = ["--split", "90,10,0", "--eval-iters", "2", "--eval-interval", "2"]
    stock = lm_losses(ENTRY, 1, [*STOCK, *evals], corpus, data_cache, valid=True)
    wlb = lm_losses(ENTRY, 2, [*WLB, *evals, "--context-parallel-size", "2",
                               "--wlb-cp-sharding", "per-doc"], corpus, data_cache, valid=True)
    assert_same_losses(stock, wlb, REL, "validation: stock arm vs WLB at CP 2", (2, 3))
    assert stock[0][1] != stock[1][1]  # other samples at each evaluation


def test_wlbs_own_packing_trains_in_megatron_lms_loop(corpus, data_cache):
    """Its own document stream, outlier queues with 'auto' thresholds, per-doc CP at CP 2."""
    losses = lm_losses(ENTRY, 2, ["--wlb-packing", "wlb", "--context-parallel-size", "2",
                                  "--wlb-cp-sharding", "per-doc", *BOTH], corpus, data_cache)
    assert [i for i, _ in losses] == [1, 2, 3]
    assert all(5.0 < x < 6.0 for _, x in losses)  # ln(255) = 5.54 untrained


def test_with_mock_data_both_arms_read_the_same_documents(data_cache):
    """``--mock-data``: WLB's mock documents, written once as .bin/.idx under the data cache,
    read by both arms (stock Megatron's own MockGPTDataset would make other samples)."""
    import glob

    mock = ["--mock-data", "--mock-num-docs", "300", "--mock-length-scale", "0.01"]
    stock = lm_losses(ENTRY, 1, [*STOCK, *mock], None, data_cache)
    wlb = lm_losses(ENTRY, 2, [*WLB, *mock, "--context-parallel-size", "2"], None, data_cache)
    assert_same_losses(stock, wlb, REL, "stock arm vs WLB on --mock-data")
    assert len(glob.glob(f"{data_cache}/wlb_mock/mock_*.idx")) == 1  # written once
