"""Launch scripts: dry-run commands, and a 2-"node" torchrun job on this machine."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.helpers.dist import free_port
from tests.helpers.torchrun import ROOT

ENV = dict(os.environ, PYTHONWARNINGS="ignore")


def _sh(script, env, *args, timeout=60):
    return subprocess.run(["bash", os.path.join(ROOT, "scripts", script), *args],
                          capture_output=True, text=True, env={**ENV, **env}, timeout=timeout)


def test_dry_run_prints_megatron_flags_and_passes_args_through():
    p = _sh("pretrain_gpt.sh", {"DRY_RUN": "1", "MODEL": "70b", "TP": "16", "PP": "4", "CP": "4",
                                "WLB": "0"}, "--train-iters", "7")
    assert p.returncode == 0, p.stderr
    cmd = p.stdout
    for flag in ("--tensor-model-parallel-size 16", "--pipeline-model-parallel-size 4",
                 "--context-parallel-size 4", "--num-query-groups 8", "--sequence-parallel",
                 "--wlb-packing megatron", "--wlb-cp-sharding per-seq", "--nproc-per-node 256"):
        assert flag in cmd, flag
    assert cmd.rstrip().endswith("--train-iters 7")


def test_bad_sizes_are_named():
    p = _sh("pretrain_gpt.sh", {"DRY_RUN": "1", "TP": "3", "NNODES": "2"})
    assert p.returncode == 2 and "TP*PP*CP*DP=3" in p.stderr
    p = _sh("pretrain_gpt.sh", {"DRY_RUN": "1", "MODEL": "13b"})
    assert p.returncode == 2 and "MODEL=13b" in p.stderr


def test_sbatch_dry_run_one_command_per_node():
    p = _sh("slurm_pretrain.sbatch", {"DRY_RUN": "1", "SLURM_JOB_NODELIST": "gpu-a,gpu-b,gpu-c",
                                      "SLURM_NNODES": "3", "NPROC_PER_NODE": "8", "TP": "8",
                                      "PP": "3", "SLURM_JOB_ID": "4242"})
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if not ln.startswith("#")]
    assert len(lines) == 3
    for rank, ln in enumerate(lines):
        assert f"--nnodes 3 --node-rank {rank} --master-addr gpu-a --master-port 29742" in ln


@pytest.mark.dist
@pytest.mark.slow
def test_two_node_agents_on_one_machine(tmp_path):
    """Two torchrun agents (--nnodes 2, node ranks 0/1, rendezvous on 127.0.0.1) train PP=2."""
    env = {"MODEL": "tiny", "PP": "2", "NNODES": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "ITERS": "3", "SEQ": "256", "GBS": "4"}
    log = tmp_path / "log.jsonl"
    procs = []
    for rank in (0, 1):
        extra = ["--log-json", str(log)] if rank == 0 else []
        procs.append(subprocess.Popen(
            ["bash", os.path.join(ROOT, "scripts", "pretrain_gpt.sh"), *extra],
            env={**ENV, **env, "NODE_RANK": str(rank)}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-2000:] + outs[1][-2000:]
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3]
