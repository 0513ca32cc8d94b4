"""examples/llama3_style.sh: a Llama-3-style Megatron-LM flag set runs unchanged in Megatron-LM's
loop, with WLB's defaults and as stock Megatron, at CP 2, and logs its validation loss at each
evaluation."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers.torchrun import ENV, ROOT

pytestmark = [pytest.mark.dist, pytest.mark.slow]


@pytest.mark.parametrize("arm", [[], ["--wlb-packing", "megatron",
                                      "--dataloader-inter-document-masking"]],
                         ids=["wlb", "stock"])
def test_llama3_style_flags_run_unchanged_with_validation(tmp_path, arm):
    path = tmp_path / "log.jsonl"
    proc = subprocess.run(
        ["bash", os.path.join(ROOT, "examples", "llama3_style.sh"), "--context-parallel-size",
         "2", "--data-cache-path", str(tmp_path), "--log-json", str(path), *arm],
        capture_output=True, text=True, env={**ENV, "NPROC": "2"}, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["iteration"] for r in rows if r.get("kind") != "valid"] == [1, 2, 3, 4]
    valid = [r for r in rows if r.get("kind") == "valid"]
    assert [r["iteration"] for r in valid] == [2, 4, 4]  # (the last: megatron's final one)
    assert all(r["valid_lm_loss"] > 0 for r in valid)
