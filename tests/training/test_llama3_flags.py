"""examples/llama3_style.sh: a Llama-3-style Megatron flag set runs unchanged under WLB's
defaults and as the stock baseline, and logs the validation loss at each eval interval."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers.torchrun import ENV, ROOT, run_pretrain

pytestmark = [pytest.mark.dist, pytest.mark.slow]


def _llama_flags() -> list[str]:
    out = subprocess.run(["bash", os.path.join(ROOT, "examples", "llama3_style.sh")],
                         capture_output=True, text=True, env={**ENV, "PRINT_ARGS": "1"},
                         check=True)
    return out.stdout.split()


@pytest.mark.parametrize("arm", [[], ["--wlb-packing", "megatron", "--wlb-cp-sharding",
                                      "per-seq"]])
def test_llama3_style_flags_run_unchanged_with_validation(tmp_path, arm):
    path = str(tmp_path / "log.jsonl")
    train = run_pretrain(2, [*_llama_flags(), "--context-parallel-size", "2", *arm], path)
    assert [r["iteration"] for r in train] == [1, 2, 3, 4]
    with open(path) as f:
        valid = [r for r in map(json.loads, f) if r.get("kind") == "valid"]
    assert [r["iteration"] for r in valid] == [2, 4]
    assert all(r["valid_lm_loss"] > 0 and r["valid_tokens"] > 0 for r in valid)
