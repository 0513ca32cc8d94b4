"""The stock arm of pretrain_gpt_wlb.py is Megatron-LM: its losses equal those of Megatron-LM's
own ``pretrain()`` with a minimal provider that has no WLB code (tests/helpers/megatron_lm_gpt.py)
on the same flags, seed and ``.bin/.idx`` corpus.

Two attentions, at 1 process and at PP 2 (micro-batches of 2 samples):

* Megatron-LM's default: causal over the whole sample (megatron's local attention in both).
* Document masking. The reference masks with megatron's dense mask (``--reset-attention-mask
  --reset-position-ids``: a document ends after each EOD); the stock arm with megatron's
  inter-document masking (``--dataloader-inter-document-masking``: ``cu_seqlens`` from the
  corpus' documents, which end with EOD here), whose THD micro-batches megatron's local
  attention does not take: WLB's attention runs them, per-seq, with megatron's per-document
  RoPE. RoPE is relative, so both compute the same attention.

The losses compared are megatron's own iteration lines (tests/helpers/lm_runs.py).
"""

from __future__ import annotations

import pytest

from tests.helpers.lm_runs import ENTRY, REFERENCE, assert_same_losses, lm_losses

REL = 1e-5
MASKING = {"causal": ([], []),
           "documents": (["--reset-attention-mask", "--reset-position-ids"],
                         ["--dataloader-inter-document-masking"])}
LAYOUTS = {1: [], 2: ["--pipeline-model-parallel-size", "2"]}
STOCK = ["--wlb-packing", "megatron"]
SAMPLES = ["--micro-batch-size", "2"]


def losses(corpus: str, cache: str, arm: str, masking: str, nproc: int):
    if arm == "reference":
        return lm_losses(REFERENCE, nproc, [*SAMPLES, *MASKING[masking][0], *LAYOUTS[nproc]],
                         corpus, cache)
    return lm_losses(ENTRY, nproc, [*STOCK, *SAMPLES, *MASKING[masking][1], *LAYOUTS[nproc]],
                     corpus, cache)


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.parametrize("nproc", [1, 2], ids=["1-process", "pp2"])
@pytest.mark.parametrize("masking", ["causal", "documents"])
def test_the_stock_arm_trains_as_megatron_lm(corpus, data_cache, masking, nproc):
    assert_same_losses(losses(corpus, data_cache, "reference", masking, nproc),
                       losses(corpus, data_cache, "stock", masking, nproc), REL,
                       "Megatron-LM vs the stock arm")


@pytest.mark.dist
@pytest.mark.slow
@pytest.mark.parametrize("masking", ["causal", "documents"])
def test_the_stock_arms_cp_on_the_cpu_trains_as_megatron_lm_on_one_process(corpus, data_cache,
                                                                          masking):
    """megatron's local layers have no CP attention: at CP 2 the stock arm's attention is WLB's
    on megatron's own CP slicing (two samples per micro-batch: causal, each sample zigzagged;
    documents, the flattened micro-batch zigzagged as one sequence)."""
    cp2 = lm_losses(ENTRY, 2, [*STOCK, *SAMPLES, *MASKING[masking][1],
                               "--context-parallel-size", "2"], corpus, data_cache)
    assert_same_losses(losses(corpus, data_cache, "reference", masking, 1), cp2, REL,
                       "Megatron-LM on 1 process vs the stock arm at CP 2")


@pytest.mark.dist
@pytest.mark.slow
def test_the_comparison_tells_the_two_attentions_apart(corpus, data_cache):
    """The 1e-5 above is tight enough to see document masking: causal and document-masked runs
    of the same samples differ by 9-15 times it here (an untrained model barely looks at other
    documents), so an arm that lost its masking would fail it."""
    causal = losses(corpus, data_cache, "stock", "causal", 1)
    masked = losses(corpus, data_cache, "reference", "documents", 1)
    assert all(abs(a - b) > 5 * REL * abs(a) for (_, a), (_, b) in zip(causal, masked))
