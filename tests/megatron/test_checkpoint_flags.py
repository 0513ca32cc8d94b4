"""Megatron-LM's checkpoint flags with WLB's packing in Megatron-LM's loop (one process).

A run of 4 iterations saves after iterations 2 and 4 (megatron's ``torch_dist``). From it:
``--ckpt-step 2`` resumes at iteration 3 as the uninterrupted run; ``--no-load-optim
--no-load-rng`` resumes at iteration 3 with the same weights (iteration 3's loss, computed
before its update, is the uninterrupted run's) and a fresh optimizer (iteration 4's is not);
``--finetune`` loads the weights and starts again at iteration 1 (WLB's data too); an empty
``--load`` starts fresh; with ``--exit-on-missing-checkpoint`` it is one line before any work.
Stock Megatron's checkpoint resumes as WLB repacking the same global batches.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.lm_runs import (
    COMMON,
    ENTRY,
    ITERATION,
    REFERENCE,
    assert_same_losses,
    lm_losses,
    per_iteration,
)
from tests.helpers.torchrun import ENV, ROOT
from tests.megatron.test_wlb_arm import REL, STOCK, WLB

pytestmark = [pytest.mark.dist, pytest.mark.slow]
FOUR = ["--train-iters", "4"]


@pytest.fixture(scope="module")
def saved(corpus, tmp_path_factory):
    """(the uninterrupted run's per-iteration losses, its checkpoint directory)."""
    ckpt = str(tmp_path_factory.mktemp("ckpt") / "wlb")
    cache = str(tmp_path_factory.mktemp("cache"))
    full = per_iteration(lm_losses(ENTRY, 1, [*WLB, *FOUR, "--save", ckpt, "--save-interval",
                                              "2"], corpus, cache))
    return full, ckpt, cache


def test_ckpt_step_resumes_at_that_iteration(corpus, saved):
    full, ckpt, cache = saved
    got = per_iteration(lm_losses(ENTRY, 1, [*WLB, *FOUR, "--load", ckpt, "--ckpt-step", "2"],
                                  corpus, cache))
    assert_same_losses(full[2:], got, REL, "uninterrupted vs --ckpt-step 2", (3, 4))


def test_no_load_optim_keeps_the_weights_and_starts_a_fresh_optimizer(corpus, saved):
    full, ckpt, cache = saved
    got = per_iteration(lm_losses(ENTRY, 1, [*WLB, *FOUR, "--load", ckpt, "--ckpt-step", "2",
                                             "--no-load-optim", "--no-load-rng"], corpus, cache))
    assert_same_losses(full[2:3], got[:1], REL, "the loaded weights' loss", (3,))
    # another update at iteration 3 (measured: 3.7e-5 relative; equal runs agree to ~2e-7)
    assert abs(got[1][1] - full[3][1]) > 2 * REL * full[3][1]


def test_finetune_loads_the_weights_and_starts_at_iteration_one(corpus, saved):
    full, ckpt, cache = saved
    got = per_iteration(lm_losses(ENTRY, 1, [*WLB, *FOUR, "--load", ckpt, "--finetune"],
                                  corpus, cache))
    assert [i for i, _ in got] == [1, 2, 3, 4]
    # iteration 1's batch through the trained weights: not the untrained model's loss
    assert abs(got[0][1] - full[0][1]) > 10 * REL * full[0][1]


def test_an_empty_load_starts_fresh_unless_told_to_exit(corpus, saved, tmp_path):
    full, _, cache = saved
    empty = str(tmp_path / "empty")
    got = per_iteration(lm_losses(ENTRY, 1, [*WLB, *FOUR, "--load", empty], corpus, cache))
    assert_same_losses(full, got, REL, "fresh vs an empty --load", (1, 2, 3, 4))
    proc = subprocess.run(
        [sys.executable, ENTRY[0], "--data-path", corpus, *COMMON, *WLB, *FOUR, "--load", empty,
         "--exit-on-missing-checkpoint"], capture_output=True, text=True, cwd=ROOT, env=ENV,
        timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"pretrain_gpt_wlb.py: error: --load {empty}: no "
                                   "checkpoint there (--exit-on-missing-checkpoint)")


def test_stock_megatrons_checkpoint_resumes_as_wlb(corpus, tmp_path, saved):
    _, _, cache = saved
    ckpt = str(tmp_path / "stock")
    stock = per_iteration(lm_losses(ENTRY, 1, [*STOCK, *FOUR], corpus, cache))
    lm_losses(ENTRY, 1, [*STOCK, *FOUR, "--save", ckpt, "--save-interval", "2",
                         "--exit-interval", "2"], corpus, cache)
    got = per_iteration(lm_losses(ENTRY, 1, [*WLB, *FOUR, "--load", ckpt], corpus, cache))
    assert_same_losses(stock[2:], got, REL, "stock uninterrupted vs resumed as WLB", (3, 4))


def _without(flags: list[str], names: set[str]) -> list[str]:
    out, skip = [], False
    for f in flags:
        if skip:
            skip = False
        elif f in names:
            skip = True
        else:
            out.append(f)
    return out


def test_use_checkpoint_args_takes_the_model_shape_from_the_checkpoint(corpus, saved):
    """--use-checkpoint-args with no model-shape flags on the command line: Megatron-LM takes
    them from the checkpoint's args, and the run continues as the uninterrupted one."""
    full, ckpt, cache = saved
    shape = {"--num-layers", "--hidden-size", "--num-attention-heads", "--seq-length",
             "--max-position-embeddings"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
         ENTRY[0], "--data-path", corpus, *_without(COMMON, shape), *WLB, *FOUR, "--load", ckpt,
         "--ckpt-step", "2", "--use-checkpoint-args", "--data-cache-path", cache],
        capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    got = per_iteration([(int(i), float(x)) for i, x in ITERATION.findall(out)])
    assert_same_losses(full[2:], got, REL, "uninterrupted vs --use-checkpoint-args", (3, 4))


def test_a_checkpoint_of_megatron_lms_own_pretrain_resumes_as_wlb(corpus, tmp_path, saved):
    """A checkpoint written by Megatron-LM's own pretrain() with a provider of its own (no WLB
    code: tests/helpers/megatron_lm_gpt.py), document-masked, resumes as WLB repacking the
    same global batches: iterations 3-4 are Megatron-LM's own."""
    _, _, cache = saved
    ckpt = str(tmp_path / "megatron_lm")
    ref = ["--micro-batch-size", "1", "--eod-mask-loss", "--use-cpu-initialization",
           "--reset-attention-mask", "--reset-position-ids", *FOUR]
    want = per_iteration(lm_losses(REFERENCE, 1, [*ref, "--save", ckpt, "--save-interval", "2"],
                                   corpus, cache))
    got = per_iteration(lm_losses(ENTRY, 1, [*WLB, *FOUR, "--load", ckpt, "--ckpt-step", "2"],
                                  corpus, cache))
    assert_same_losses(want[2:], got, REL, "Megatron-LM's own run vs resumed as WLB", (3, 4))
