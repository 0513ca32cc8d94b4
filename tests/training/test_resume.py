"""Resume equivalence: k iterations, save, resume for k more == 2k iterations straight."""

from __future__ import annotations

import os

import pytest

from tests.helpers.torchrun import TINY, run_pretrain

pytestmark = [pytest.mark.dist, pytest.mark.slow]

# outlier queues on, so the packer state (queued documents) must survive the checkpoint
FLAGS = TINY + ["--wlb-packing", "wlb", "--wlb-outlier-thresholds", "120,200",
                "--pipeline-model-parallel-size", "2", "--use-distributed-optimizer",
                "--lr-decay-iters", "8"]


def _without(flags, name):
    i = flags.index(name)
    return flags[:i] + flags[i + 2:]


def test_resume_reproduces_uninterrupted_run(tmp_path):
    base = _without(FLAGS, "--train-iters")
    full = run_pretrain(2, base + ["--train-iters", "6"], str(tmp_path / "full.jsonl"))
    ck = str(tmp_path / "ckpt")
    first = run_pretrain(2, base + ["--train-iters", "3", "--save", ck],
                         str(tmp_path / "a.jsonl"))
    assert os.path.exists(os.path.join(ck, "iter_0000003", "common.pt"))  # torch_dist
    second = run_pretrain(2, base + ["--train-iters", "6", "--load", ck],
                          str(tmp_path / "b.jsonl"))
    resumed = first + second
    assert [r["iteration"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert [r["plan_digest"] for r in resumed] == [r["plan_digest"] for r in full]
    for a, b in zip(resumed, full):
        assert a["lm_loss"] == pytest.approx(b["lm_loss"], abs=1e-6), a["iteration"]
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9)


def test_a_torch_format_checkpoint_resumes_only_under_its_layout(tmp_path):
    """WLB's first format (per-rank files) still saves and resumes; another layout is refused
    (the default torch_dist format reshards: test_checkpoint_layouts.py)."""
    base = _without(FLAGS, "--train-iters") + ["--ckpt-format", "torch"]
    ck = str(tmp_path / "ckpt")
    run_pretrain(2, base + ["--train-iters", "1", "--save", ck], str(tmp_path / "a.jsonl"))
    assert os.path.exists(os.path.join(ck, "iter_0000001", "rank_00001.pt"))
    other = _without(base, "--pipeline-model-parallel-size")
    with pytest.raises(AssertionError, match="a torch-format checkpoint resumes only under its"):
        run_pretrain(2, other + ["--train-iters", "2", "--load", ck], str(tmp_path / "b.jsonl"))
    second = run_pretrain(2, base + ["--train-iters", "2", "--load", ck], str(tmp_path / "c.jsonl"))
    # the uninterrupted run (test_resume_reproduces_uninterrupted_run's, when it ran first)
    full = run_pretrain(2, _without(FLAGS, "--train-iters") + ["--train-iters", "6"],
                        str(tmp_path / "full.jsonl"))
    assert [r["iteration"] for r in second] == [2]
    assert second[0]["lm_loss"] == pytest.approx(full[1]["lm_loss"], abs=1e-6)
