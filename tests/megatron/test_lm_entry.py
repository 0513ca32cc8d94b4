"""pretrain_gpt_wlb.py's command line: Megatron-LM's parser and validation with WLB's flags,
bad input one line (exit 2) before anything is built, whoever finds it: argparse (its usage
block of Megatron-LM's flags dropped), WLB's checks, a refused combination, Megatron-LM's own
``assert`` in ``validate_args``."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers.torchrun import ENV, ROOT

TINY = ["--wlb-packing", "megatron", "--mock-data", "--tokenizer-type", "NullTokenizer",
        "--vocab-size", "255", "--num-layers", "2", "--hidden-size", "64",
        "--num-attention-heads", "4", "--seq-length", "256", "--max-position-embeddings", "256",
        "--micro-batch-size", "1", "--global-batch-size", "4", "--train-iters", "3",
        "--transformer-impl", "local", "--lr", "1e-3", "--eval-interval", "10"]


#: (flags, what the one line names) of bad command lines
CASES = [
    (["--no-such-flag"], "--no-such-flag"),
    (["--wlb-max-wait", "0"], "--wlb-max-wait=0"),
    (["--wlb-packing", "wlb", "--micro-batch-size", "2"], "--micro-batch-size=2"),
    (["--dataloader-inter-document-masking", "--attention-backend", "local",
      "--transformer-impl", "local"], "--attention-backend local"),
    (["--context-parallel-size", "2", "--transformer-impl", "local",
      "--reset-attention-mask"], "--reset-attention-mask with --context-parallel-size 2"),
    (["--wlb-packing", "wlb", "--hybrid-context-parallel"], "--hybrid-context-parallel"),
    (["--tensor-model-parallel-size", "2"], "world size (1)"),
    (["--wlb-packing", "wlb", "--attention-dropout", "0", "--transformer-impl", "local",
      "--mock-length-sample", "/no/such.json"], "--mock-length-sample /no/such.json"),
    (["--wlb-packing", "wlb", "--attention-dropout", "0", "--transformer-impl", "local",
      "--wlb-elastic-cp"], "DP=1 x CP=1"),
    (["--wlb-elastic-cp"], "--wlb-elastic-cp with --wlb-packing megatron"),
    (["--wlb-packing", "wlb", "--attention-dropout", "0", "--fp8-format", "hybrid"],
     "--fp8-format with --wlb-packing wlb"),
    (["--transformer-impl", "transformer_engine"], "TransformerEngine is not installed"),
    (["--save", "/no/such/dir"], "refused the flags: assert args.save_interval is not None"),
    (["--wlb-convert-optimizer-save", "/no/out"], "--wlb-convert-optimizer-save needs --load"),
    (["--load", "/no/ckpt", "--wlb-convert-optimizer-save", "/no/out"],
     "--load /no/ckpt: no megatron torch_dist checkpoint to convert"),
]
IDS = ["argparse", "wlb-check", "wlb-micro-batch", "combination", "stock-cp-dense-mask",
        "hybrid-cp", "megatron-assert", "wlb-preflight", "elastic-no-pool", "elastic-stock",
        "wlb-fp8", "no-te", "megatron-bare-assert", "convert-no-load", "convert-no-checkpoint"]
#: every case through pretrain_gpt_wlb.main in one process (a process per case, importing
#: megatron each time, took a minute more): its exit status, output and error output per case
_RUN_ALL = """
import contextlib, io, json, sys
import pretrain_gpt_wlb
out = []
for argv in json.loads(sys.argv[1]):
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            status = pretrain_gpt_wlb.main(argv)
        except BaseException as e:  # (a case that fails otherwise fails alone)
            status = repr(e)
    out.append([status, stdout.getvalue(), stderr.getvalue()])
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def refused() -> list:
    # (--preflight-only: a case that passes every check exits 0 instead of training)
    cases = json.dumps([[*TINY, *flags, "--preflight-only"] for flags, _ in CASES])
    proc = subprocess.run([sys.executable, "-c", _RUN_ALL, cases], capture_output=True,
                          text=True, cwd=ROOT, env=ENV, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("case", range(len(CASES)), ids=IDS)
def test_bad_input_is_one_line_before_any_work(refused, case):
    status, stdout, stderr = refused[case]
    lines = stderr.strip().splitlines()
    assert status == 2, stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("pretrain_gpt_wlb.py: error: "), lines
    assert CASES[case][1] in lines[0]
    # nothing built (megatron prints its flags once it has validated them: the pre-flight
    # needs what its validation derives)
    assert "building" not in stdout and "> initializ" not in stdout


def _entry(flags: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "pretrain_gpt_wlb.py", *flags],
                          capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120)


def test_a_missing_data_file_or_eval_interval_is_named_and_preflight_only_builds_nothing(
        tmp_path):
    proc = _entry([*[a for a in TINY if a != "--mock-data"], "--data-path",
                   str(tmp_path / "none")])
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"pretrain_gpt_wlb.py: error: --data-path {tmp_path}/none:"
                                   f" no {tmp_path}/none.bin")
    proc = _entry(TINY[:-2])  # Megatron-LM needs --eval-interval (a traceback otherwise)
    assert proc.returncode == 2 and "--eval-interval is needed" in proc.stderr
    proc = _entry([*TINY, "--preflight-only"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "building" not in proc.stdout and " iteration " not in proc.stdout
