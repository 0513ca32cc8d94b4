"""The GPU path (NCCL, bf16, a varlen attention kernel): skipped on machines without CUDA.

One GPU: one process, CP=1, so it checks device placement, NCCL collectives, bf16 and the
kernel chosen by ``--attention-backend auto``; the CP collectives on NCCL need two GPUs.
"""

import pytest
import torch

from tests.helpers.torchrun import BASELINE, TINY, WLB, launch_pretrain, run_pretrain

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_gpu_bf16_training_baseline_and_wlb_agree(tmp_path):
    """bf16 on one GPU: both packings train the same documents (delay off) to close losses."""
    losses = {}
    for name, flags in (("baseline", BASELINE), ("wlb", WLB)):
        recs = run_pretrain(1, [*TINY, *flags, "--bf16", "--attention-backend", "auto"],
                            str(tmp_path / f"{name}.jsonl"))
        assert len(recs) == 3 and all(r["tokens"] > 0 for r in recs)
        losses[name] = [r["lm_loss"] for r in recs]
    for a, b in zip(losses["baseline"], losses["wlb"]):
        assert abs(a - b) < 5e-2, losses


def test_gpu_run_names_its_attention_kernel():
    proc = launch_pretrain([*TINY, *WLB, "--bf16", "--train-iters", "1"], torchrun=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any(f"attention={k}" in proc.stdout for k in ("flash", "te", "varlen")), \
        proc.stdout[-2000:]
