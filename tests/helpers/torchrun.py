"""Launch pretrain_gpt_wlb.py under torchrun from a test and read its --log-json records."""

from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A tiny attention-heavy model on mock documents; every layout divides it.
TINY = [
    "--mock-data", "--mock-num-docs", "400", "--seq-length", "256", "--global-batch-size", "8",
    "--num-layers", "4", "--hidden-size", "64", "--num-attention-heads", "4",
    "--group-query-attention", "--num-query-groups", "2", "--train-iters", "3",
    "--lr-decay-iters", "10",
    "--lr-warmup-iters", "1", "--no-wlb-shuffle", "--seed", "7",
]
WLB = ["--wlb-packing", "wlb", "--wlb-cp-sharding", "per-doc", "--wlb-outlier-thresholds", "none"]
BASELINE = ["--wlb-packing", "megatron", "--wlb-cp-sharding", "per-seq"]


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


def run_pretrain(nproc: int, args: list[str], log_json: str, timeout: int = 300) -> list[dict]:
    """Run ``nproc`` processes; returns the per-iteration training records, validation rows
    left out (raises with the log tail)."""
    proc = launch_pretrain([*args, "--log-json", log_json], nproc=nproc, timeout=timeout,
                           torchrun=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-4000:]
        raise AssertionError(f"{' '.join(proc.args)} failed with {proc.returncode}:\n{tail}")
    with open(log_json) as f:
        return [r for r in map(json.loads, f) if r.get("kind") != "valid"]
