"""tools/bench_data_path.py takes Megatron-LM's command line (pretrain_gpt_wlb.py's flags,
parsed and validated by Megatron-LM) and times WLB's host path for one rank of a job of any
size, without a process group."""

from __future__ import annotations

import json

import pytest

from tools.bench_data_path import main
from wlb.host.step import STAGES


def _flags(cache: str) -> list[str]:
    return ["--mock-data", "--mock-num-docs", "300", "--seq-length", "256",
            "--max-position-embeddings", "256", "--global-batch-size", "8",
            "--micro-batch-size", "1", "--num-layers", "4", "--hidden-size", "64",
            "--num-attention-heads", "4", "--context-parallel-size", "2",
            "--wlb-packing", "wlb", "--wlb-cp-sharding", "adaptive",
            "--wlb-outlier-thresholds", "120,200", "--tokenizer-type", "NullTokenizer",
            "--vocab-size", "257", "--lr", "1e-3", "--eval-interval", "1000",
            "--transformer-impl", "local", "--attention-dropout", "0",
            "--data-cache-path", cache, "--train-samples", "80"]


def test_the_benchmark_prints_its_figures_as_one_json_line(capsys, tmp_path):
    flags = _flags(str(tmp_path))
    assert main(["--world-size", "4", "--rank", "1", "--iters", "3", "--json", *flags]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["coordinates"] == {"tp": 0, "cp": 1, "dp": 0, "pp": 0}
    assert set(out["stage_ms"]) == set(STAGES)
    assert out["iter_ms"] > 0 and out["startup_ms"] > 0 and out["microbatches_on_rank"] == 4
    assert out["wait_ms"] >= out["iter_ms"]  # without --step-ms nothing overlaps
    assert "cp=2, dp=2" in out["layout"]
    # a job of 8,192 ranks, parsed and validated by Megatron-LM as well (a second call)
    assert main(["--world-size", "8192", "--rank", "8191", "--iters", "1", "--warmup", "0",
                 "--json", *flags, "--tensor-model-parallel-size", "4",
                 "--global-batch-size", "4096"]) == 0
    big = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert big["coordinates"]["dp"] == 1023 and big["microbatches_on_rank"] == 4


def test_the_benchmark_refuses_bad_input_in_one_line(capsys, tmp_path):
    assert main(["--world-size", "3", "--iters", "1", *_flags(str(tmp_path))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench_data_path: error: ") and "3" in err[0]
    with pytest.raises(SystemExit):
        main(["--world-size", "4", "--iters", "0", *_flags(str(tmp_path))])
    assert "--iters=0 must be >= 1" in capsys.readouterr().err
