"""Resume equivalence: k iterations, save, resume for k more == 2k iterations straight."""

from __future__ import annotations

import os

import pytest

from tests.helpers.torchrun import TINY, launch_pretrain, run_pretrain

pytestmark = [pytest.mark.dist, pytest.mark.slow]

# outlier queues on, so the packer state (queued documents) must survive the checkpoint
FLAGS = TINY + ["--wlb-packing", "wlb", "--wlb-outlier-thresholds", "120,200",
                "--pipeline-model-parallel-size", "2", "--use-distributed-optimizer",
                "--lr-decay-iters", "8", "--hidden-dropout", "0.1"]
# dropout on: an exact resume needs the RNG states restored


def _without(flags, name):
    i = flags.index(name)
    return flags[:i] + flags[i + 2:]


def test_resume_reproduces_uninterrupted_run(tmp_path):
    base = _without(FLAGS, "--train-iters")
    full = run_pretrain(2, base + ["--train-iters", "6"], str(tmp_path / "full.jsonl"))
    ck = str(tmp_path / "ckpt")
    first = run_pretrain(2, base + ["--train-iters", "3", "--save", ck],
                         str(tmp_path / "a.jsonl"))
    assert os.path.exists(os.path.join(ck, "iter_0000003", "metadata.json"))  # torch_dist
    second = run_pretrain(2, base + ["--train-iters", "6", "--load", ck],
                          str(tmp_path / "b.jsonl"))
    resumed = first + second
    assert [r["iteration"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert [r["plan_digest"] for r in resumed] == [r["plan_digest"] for r in full]
    for a, b in zip(resumed, full):
        # bitwise on purpose: the same machine, layout and kernels continue the same floats
        # (docs/reliability.md, "What is bitwise"); with dropout, only if the RNG is restored
        assert (a["lm_loss"], a["grad_norm"], a["lr"]) == (b["lm_loss"], b["grad_norm"],
                                                           b["lr"]), a["iteration"]


def test_a_torch_format_checkpoint_converts_to_torch_dist(tmp_path):
    """WLB's first format (per-rank files, --ckpt-format torch) still saves; it resumes only
    under its layout, and --ckpt-convert-format rewrites it (here --ckpt-step 1 of two) as
    torch_dist, which then resumes under another layout (DP 2 instead of PP 2) as the
    uninterrupted run continues (without dropout: another layout draws other random numbers)."""
    base = _without(_without(FLAGS, "--train-iters"), "--hidden-dropout")
    legacy, conv = str(tmp_path / "legacy"), str(tmp_path / "conv")
    full = run_pretrain(2, base + ["--ckpt-format", "torch", "--train-iters", "2", "--save",
                                   legacy, "--save-interval", "1"], str(tmp_path / "a.jsonl"))
    assert os.path.exists(os.path.join(legacy, "iter_0000001", "rank_00001.pt"))
    other = _without(base, "--pipeline-model-parallel-size")
    refused = launch_pretrain(other + ["--ckpt-format", "torch", "--train-iters", "2", "--load",
                                       legacy, "--preflight-only"], env={"WORLD_SIZE": "2"})
    assert refused.returncode == 2
    assert "a torch-format checkpoint resumes only under its layout" in refused.stderr
    run_pretrain(2, base + ["--ckpt-format", "torch", "--train-iters", "2", "--load", legacy,
                            "--ckpt-step", "1", "--ckpt-convert-format", "torch_dist",
                            "--ckpt-convert-save", conv], str(tmp_path / "c.jsonl"))
    assert sorted(os.listdir(conv)) == ["iter_0000001", "latest_checkpointed_iteration.txt"]
    assert os.path.exists(os.path.join(conv, "iter_0000001", "metadata.json"))
    second = run_pretrain(2, other + ["--train-iters", "2", "--load", conv],
                          str(tmp_path / "d.jsonl"))
    assert [r["iteration"] for r in second] == [2]
    assert second[0]["lm_loss"] == pytest.approx(full[1]["lm_loss"], abs=1e-5)
