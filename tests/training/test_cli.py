"""pretrain_gpt_wlb.py rejects bad input with one line naming it (exit 2); preprocess tool."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.torchrun import ENV, ROOT, TINY, launch_pretrain


@pytest.mark.parametrize(
    "extra, match",
    [
        (["--micro-batch-size", "2"], "--micro-batch-size=2"),
        (["--context-parallel-size", "2"], "world_size=1 is not divisible by tp*pp*cp=2"),
        (["--num-layers-per-virtual-pipeline-stage", "3"],
         "--num-layers-per-virtual-pipeline-stage=3"),
        (["--wlb-outlier-thresholds", "9,3"], "increasing"),
        (["--split", "x"], "--split='x'"),
        (["--attention-dropout", "0.1"], "--attention-dropout=0.1"),
        (["--attention-backend", "flash"], "--attention-backend flash needs"),
    ],
)
def test_bad_flags_exit_2_with_one_line(extra, match):
    proc = launch_pretrain(TINY + extra, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert match in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_data_path_is_named(tmp_path):
    args = [a for a in TINY if a != "--mock-data"] + ["--data-path", str(tmp_path / "nope")]
    proc = launch_pretrain(args, timeout=120)
    assert proc.returncode == 2 and "nope.bin not found" in proc.stderr


def test_preprocess_writes_what_megatron_reads(tmp_path):
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    from wlb.preprocess.tokenizer import ByteTokenizer

    texts = ["hello world", "a" * 1000, "ünïcode ✓", "x"]
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    prefix = str(tmp_path / "out" / "corpus")
    proc = subprocess.run([sys.executable, "-m", "tools.preprocess_data",
                           "--input", str(src), "--output-prefix", prefix],
                          capture_output=True, text=True, env=ENV, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    ds = IndexedDataset(prefix)
    tok = ByteTokenizer()
    assert len(ds) == len(texts)
    for i, t in enumerate(texts):
        doc = ds[i]
        assert doc[-1] == tok.eod
        assert tok.decode(doc[:-1]) == t
        assert (np.asarray(doc[:-1]) == tok.encode(t)).all()
    with open(prefix + ".meta.json") as f:
        meta = json.load(f)
    assert meta == {"tokenizer": "byte", "vocab_size": 257, "eod": 256, "documents": 4,
                    "tokens": sum(len(t.encode()) + 1 for t in texts)}


def test_preprocess_bad_jsonl_names_the_line(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text('{"text": "ok"}\n{"body": "no text key"}\n')
    proc = subprocess.run([sys.executable, "-m", "tools.preprocess_data",
                           "--input", str(src), "--output-prefix", str(tmp_path / "o")],
                          capture_output=True, text=True, env=ENV, timeout=120, cwd=ROOT)
    assert proc.returncode == 2 and "line 2" in proc.stderr
    assert not os.path.exists(tmp_path / "o.bin")
