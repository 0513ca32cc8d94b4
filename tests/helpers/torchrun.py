"""Launch pretrain_gpt_wlb.py under torchrun from a test and read its --log-json records."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from wlb.megatron.replica import CPU_FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: a tiny attention-heavy model on WLB's mock documents (both arms read them); every layout
#: divides it
TINY = [
    *CPU_FLAGS, "--mock-data", "--mock-num-docs", "400", "--tokenizer-type", "NullTokenizer",
    "--vocab-size", "255", "--seq-length", "256",
    "--max-position-embeddings", "256", "--global-batch-size", "8", "--micro-batch-size", "1",
    "--num-layers", "4", "--hidden-size", "64", "--num-attention-heads", "4",
    "--group-query-attention", "--num-query-groups", "2", "--position-embedding-type", "rope",
    "--hidden-dropout", "0", "--attention-dropout", "0", "--train-iters", "3", "--lr", "3e-4",
    "--lr-decay-iters", "10", "--lr-warmup-iters", "1", "--seed", "7", "--log-interval", "1",
    "--eval-iters", "0", "--eval-interval", "1000", "--calculate-per-token-loss",
    "--eod-mask-loss", "--use-cpu-initialization",
]
WLB = ["--wlb-packing", "wlb", "--wlb-cp-sharding", "per-doc", "--wlb-outlier-thresholds", "none"]
BASELINE = ["--wlb-packing", "megatron", "--dataloader-inter-document-masking"]
#: megatron's dataset caches and the mock documents of this pytest process's runs
DATA_CACHE = tempfile.mkdtemp(prefix="wlb_test_cache_")


ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def launch_pretrain(
    args: list[str], *, nproc: int = 1, env: dict | None = None, timeout: int = 300,
    torchrun: bool | None = None,
) -> subprocess.CompletedProcess:
    """Run pretrain_gpt_wlb.py, output captured: under torchrun (default when ``nproc`` > 1, on
    a free port) or as a plain single process."""
    cmd = [sys.executable, os.path.join(ROOT, "pretrain_gpt_wlb.py"), *args]
    if nproc > 1 if torchrun is None else torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc_per_node={nproc}", *cmd[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**ENV, **(env or {})}, cwd=ROOT)


#: finished runs of this pytest process: (nproc, args without --log-json) -> log file
_RUNS: dict[tuple, str] = {}


def run_pretrain(nproc: int, args: list[str], log_json: str, timeout: int = 300, *,
                 reuse: bool = True) -> list[dict]:
    """Run ``nproc`` processes; returns the per-iteration training records, validation rows
    left out (raises with the log tail).

    A run is deterministic in its flags, so a run with the same ``nproc`` and flags as one that
    already finished in this pytest process is not started again: its log is copied to
    ``log_json`` (several tests share a reference run this way). Flags naming a test's own
    paths (``--save``, ``--load``, ``--log-plans``) make every such run distinct.
    ``reuse=False`` always starts a process (a test of run-to-run determinism needs that).
    """
    key = (nproc, *_without_log_json(args))
    if reuse and key in _RUNS and os.path.exists(_RUNS[key]):
        shutil.copyfile(_RUNS[key], log_json)
    else:
        cache = [] if "--data-cache-path" in args else ["--data-cache-path", DATA_CACHE]
        proc = launch_pretrain([*args, *cache, "--log-json", log_json], nproc=nproc,
                               timeout=timeout,
                               torchrun=True)
        if proc.returncode != 0:
            tail = (proc.stdout + proc.stderr)[-4000:]
            raise AssertionError(f"{' '.join(proc.args)} failed with {proc.returncode}:\n{tail}")
        _RUNS[key] = log_json
    with open(log_json) as f:
        return [r for r in map(json.loads, f) if r.get("kind") != "valid"]


def _without_log_json(args: list[str]) -> list[str]:
    if "--log-json" not in args:
        return list(args)
    i = args.index("--log-json")
    return [*args[:i], *args[i + 2:]]
