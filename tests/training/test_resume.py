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
    assert os.path.exists(os.path.join(ck, "iter_0000003", "meta.json"))
    second = run_pretrain(2, base + ["--train-iters", "6", "--load", ck],
                          str(tmp_path / "b.jsonl"))
    resumed = first + second
    assert [r["iteration"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert [r["plan_digest"] for r in resumed] == [r["plan_digest"] for r in full]
    for a, b in zip(resumed, full):
        assert a["lm_loss"] == pytest.approx(b["lm_loss"], abs=1e-6), a["iteration"]
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9)


def test_load_with_other_layout_is_refused(tmp_path):
    base = _without(FLAGS, "--train-iters")
    ck = str(tmp_path / "ckpt")
    run_pretrain(2, base + ["--train-iters", "1", "--save", ck], str(tmp_path / "a.jsonl"))
    other = _without(base, "--pipeline-model-parallel-size")
    with pytest.raises(AssertionError, match="resume with the same parallel layout"):
        run_pretrain(2, other + ["--train-iters", "2", "--load", ck], str(tmp_path / "b.jsonl"))
