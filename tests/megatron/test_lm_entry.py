"""pretrain_gpt_wlb_lm.py's command line: Megatron-LM's parser and validation with WLB's flags,
bad input one line (exit 2) before anything is built, whoever finds it: argparse (its usage
block of Megatron-LM's flags dropped), WLB's checks, a refused combination, Megatron-LM's own
``assert`` in ``validate_args``."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.torchrun import ENV, ROOT

TINY = ["--wlb-packing", "megatron", "--mock-data", "--tokenizer-type", "NullTokenizer",
        "--vocab-size", "255", "--num-layers", "2", "--hidden-size", "64",
        "--num-attention-heads", "4", "--seq-length", "256", "--max-position-embeddings", "256",
        "--micro-batch-size", "1", "--global-batch-size", "4", "--train-iters", "3",
        "--lr", "1e-3"]


@pytest.mark.parametrize("flags, named", [
    (["--no-such-flag"], "--no-such-flag"),
    (["--wlb-max-wait", "0"], "--wlb-max-wait=0"),
    (["--wlb-packing", "wlb", "--micro-batch-size", "2"], "--micro-batch-size=2"),
    (["--dataloader-inter-document-masking", "--attention-backend", "local",
      "--transformer-impl", "local"], "--attention-backend local"),
    (["--context-parallel-size", "2", "--transformer-impl", "local"],
     "--context-parallel-size 2"),
    (["--wlb-packing", "wlb", "--hybrid-context-parallel"], "--hybrid-context-parallel"),
    (["--tensor-model-parallel-size", "2"], "world size (1)"),
], ids=["argparse", "wlb-check", "wlb-micro-batch", "combination", "cp-not-yet", "hybrid-cp",
        "megatron-assert"])
def test_bad_input_is_one_line_before_any_work(flags, named):
    proc = subprocess.run([sys.executable, "pretrain_gpt_wlb_lm.py", *TINY, *flags],
                          capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("pretrain_gpt_wlb_lm.py: error: "), lines
    assert named in lines[0]
    assert proc.stdout == ""  # nothing built, nothing printed (megatron prints its flags after)
