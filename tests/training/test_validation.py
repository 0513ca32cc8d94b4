"""Validation at its intervals; --exit-interval / --exit-duration-in-mins save and resume exactly.

(That every layout and packer evaluates the same validation micro-batches to the same loss is
checked with the layouts themselves, in ``test_layouts.py``.)"""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers.torchrun import BASELINE, TINY, WLB, launch_pretrain, run_pretrain

pytestmark = [pytest.mark.dist, pytest.mark.slow]

def _valid_rows(path: str) -> list[dict]:
    with open(path) as f:
        return [r for r in map(json.loads, f) if r.get("kind") == "valid"]


def test_validation_runs_at_each_interval_and_after_the_last(tmp_path):
    path = str(tmp_path / "log.jsonl")
    flags = [*TINY, *WLB, "--split", "90,10,0", "--eval-iters", "1", "--eval-interval", "2"]
    proc = launch_pretrain([*flags, "--train-iters", "3", "--log-json", path])
    assert proc.returncode == 0, proc.stderr[-3000:]
    valid = _valid_rows(path)
    assert [r["iteration"] for r in valid] == [2, 3]
    with open(path) as f:
        train = [r for r in map(json.loads, f) if r.get("kind") != "valid"]
    assert valid[0]["tokens_trained"] == sum(r["tokens"] for r in train[:2])
    assert "validation loss at iteration 2 | lm loss value: " in proc.stdout
    assert proc.stdout.count("validation loss at iteration") == 2


# stock Megatron's shuffled sample order (no --no-wlb-shuffle), whose position must resume
SHUFFLED = [f for f in TINY if f != "--no-wlb-shuffle"]


# (WLB with --exit-interval: test_checkpoint_layouts.py's chain exits and resumes at every leg,
# and test_resume.py checks a WLB resume bitwise)
@pytest.mark.parametrize("arm,stop", [
    (BASELINE, ["--exit-duration-in-mins", "0.000001"]),  # over after the first iteration
])
def test_exit_saves_a_checkpoint_that_resumes_exactly(tmp_path, arm, stop):
    """Bitwise on purpose: a resume on the same machine and layout continues the uninterrupted
    run's floats exactly (docs/reliability.md, "What is bitwise")."""
    flags = [*SHUFFLED[:SHUFFLED.index("--train-iters")],
             *SHUFFLED[SHUFFLED.index("--train-iters") + 2:], *arm, "--train-iters", "4"]
    full = run_pretrain(2, flags, str(tmp_path / "full.jsonl"))
    ck = str(tmp_path / "ck")
    first = run_pretrain(2, [*flags, *stop, "--save", ck], str(tmp_path / "a.jsonl"))
    done = len(first)
    assert done == (2 if "--exit-interval" in stop else 1)
    assert os.path.isdir(os.path.join(ck, f"iter_{done:07d}"))
    second = run_pretrain(2, [*flags, "--load", ck], str(tmp_path / "b.jsonl"))
    assert [r["iteration"] for r in second] == list(range(done + 1, 5))
    for a, b in zip(full[done:], second):
        assert (a["lm_loss"], a["plan_digest"]) == (b["lm_loss"], b["plan_digest"])
