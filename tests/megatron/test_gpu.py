"""The GPU path in Megatron-LM's loop (NCCL, bf16, a varlen attention kernel): skipped on
machines without CUDA.

One GPU: one process, CP=1, so it checks device placement, NCCL collectives, bf16 and the
kernel chosen by ``--attention-backend auto``; the CP collectives on NCCL need two GPUs.
"""

import importlib.util

import pytest
import torch

from tests.helpers.torchrun import BASELINE, TINY, WLB, launch_pretrain, run_pretrain

#: the tiny run on NCCL (megatron's local layers; WLB's attention picks a GPU kernel)
GPU = [("nccl" if f == "gloo" else f) for f in TINY]

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_gpu_bf16_training_baseline_and_wlb_agree(tmp_path):
    """bf16 on one GPU: both packings train the same documents (delay off) to close losses."""
    losses = {}
    for name, flags in (("baseline", BASELINE), ("wlb", WLB)):
        recs = run_pretrain(1, [*GPU, *flags, "--bf16", "--attention-backend", "auto"],
                            str(tmp_path / f"{name}.jsonl"))
        assert len(recs) == 3 and all(r["tokens"] > 0 for r in recs)
        losses[name] = [r["lm_loss"] for r in recs]
    for a, b in zip(losses["baseline"], losses["wlb"]):
        assert abs(a - b) < 5e-2, losses


def test_gpu_wlb_run_logs_megatrons_line_and_wlbs():
    proc = launch_pretrain([*GPU, *WLB, "--bf16", "--train-iters", "1"], torchrun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert " WLB | iteration        1 |" in proc.stdout and "lm loss:" in proc.stdout, \
        proc.stdout[-2000:]


@pytest.mark.skipif(importlib.util.find_spec("transformer_engine") is None,
                    reason="needs TransformerEngine")
def test_gpu_wlb_on_transformer_engine_layers_trains_as_on_local_ones(tmp_path):
    """TransformerEngine's linear and norm layers with WLB's core attention in their spec's
    ``core_attention`` slot (wlb.megatron.gpt.wlb_layer_spec): WLB's packing trains the local
    layers' model (same initialisation seed, same documents) to close bf16 losses."""
    losses = {}
    for impl in ("local", "transformer_engine"):
        flags = [f if f != "local" else impl for f in GPU]  # (--transformer-impl's value)
        recs = run_pretrain(1, [*flags, *WLB, "--bf16"], str(tmp_path / f"{impl}.jsonl"))
        assert len(recs) == 3 and all(r["tokens"] > 0 for r in recs)
        losses[impl] = [r["lm_loss"] for r in recs]
    for a, b in zip(losses["local"], losses["transformer_engine"]):
        assert abs(a - b) < 5e-2, losses
