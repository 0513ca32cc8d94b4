"""Launch scripts: dry-run commands, and a 2-"node" torchrun job on this machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
                 "--wlb-packing megatron", "--dataloader-inter-document-masking",
                 "--nproc-per-node 256", "pretrain_gpt_wlb.py"):
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


@pytest.mark.parametrize("spec, hosts", [
    ("node[01-03]", ["node01", "node02", "node03"]),
    ("gpu[08-10],cpu[1,3]-ib", ["gpu08", "gpu09", "gpu10", "cpu1-ib", "cpu3-ib"]),
    ("r[1-2]-n[9-10]", ["r1-n9", "r1-n10", "r2-n9", "r2-n10"]),
    ("a,b", ["a", "b"]),
    ("login", ["login"]),
])
def test_hostlist_expansion_by_hand(spec, hosts):
    from wlb.launch import expand_hostlist

    assert expand_hostlist(spec) == hosts


@pytest.mark.parametrize("spec, word", [("node[01-", "unbalanced"), ("n[3-1]", "backwards"),
                                        ("n[a-b]", "not a number"), ("a,,b", "empty"),
                                        ("", "empty")])
def test_bad_hostlists_are_named(spec, word):
    from wlb.launch import expand_hostlist

    with pytest.raises(ValueError, match=word):
        expand_hostlist(spec)


def test_sbatch_expands_bracket_node_lists_without_scontrol():
    env = {"DRY_RUN": "1", "SLURM_JOB_NODELIST": "node[01-02]", "SLURM_NNODES": "2",
           "NPROC_PER_NODE": "8", "TP": "8", "PP": "2", "PATH": "/usr/bin:/bin"}
    p = _sh("slurm_pretrain.sbatch", env)
    assert p.returncode == 0, p.stderr
    lines = [ln for ln in p.stdout.splitlines() if not ln.startswith("#")]
    assert len(lines) == 2 and all("--master-addr node01" in ln for ln in lines)
    assert "--node-rank 1" in lines[1]


def test_sbatch_refuses_a_layout_that_does_not_fit_and_prints_every_factor():
    p = _sh("slurm_pretrain.sbatch", {"DRY_RUN": "1", "SLURM_JOB_NODELIST": "node[01-02]",
                                      "SLURM_NNODES": "2", "NPROC_PER_NODE": "8"})
    assert p.returncode == 2 and p.stdout == ""
    for factor in ("2 nodes", "8 processes", "= 16", "TP=8", "PP=4", "CP=1", "= 32"):
        assert factor in p.stderr, factor
    p = _sh("slurm_pretrain.sbatch", {"DRY_RUN": "1", "SLURM_JOB_NODELIST": "a,b",
                                      "SLURM_NNODES": "2", "NPROC_PER_NODE": "8", "TP": "8",
                                      "PP": "1", "DP": "4"})
    assert p.returncode == 2 and "DP=4" in p.stderr and "= 16" in p.stderr


def test_launcher_honours_wlb_venv_and_refuses_a_missing_one(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    py = venv / "bin" / "python"
    py.write_text("#!/bin/sh\nexit 0\n")
    py.chmod(0o755)
    p = _sh("pretrain_gpt.sh", {"DRY_RUN": "1", "WLB_VENV": str(venv)})
    assert p.returncode == 0 and p.stdout.startswith(str(py)), p.stdout + p.stderr
    p = _sh("pretrain_gpt.sh", {"DRY_RUN": "1", "WLB_VENV": str(tmp_path / "nope")})
    assert p.returncode == 2 and "WLB_VENV" in p.stderr and str(tmp_path / "nope") in p.stderr


def test_set_up_without_python_312_says_what_to_install(tmp_path):
    """scripts/_venv.sh on a machine whose only Python is older than 3.12 (no pyenv on the PATH,
    ``$PYTHON`` a 3.11-like stub): one line, nothing made. A .venv of an older Python is made
    again (the stub venv here is removed first)."""
    old = tmp_path / "py311"
    old.write_text("#!/bin/sh\nexit 1\n")  # answers 'no' to the version check, like 3.11
    old.chmod(0o755)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(old)
    env = {"PATH": "/usr/bin:/bin", "PYTHON": str(old), "WLB_VENV": str(venv)}
    p = subprocess.run(["bash", "-c", f"source {ROOT}/scripts/_venv.sh"], capture_output=True,
                       text=True, env={**ENV, **env}, timeout=60)
    if os.path.exists("/usr/bin/python3.12") or os.path.exists("/usr/bin/python3.13"):
        pytest.skip("this machine has a system Python >= 3.12")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "making it again with Python >= 3.12" in p.stdout and not venv.exists()
    (line,) = p.stderr.strip().splitlines()
    assert line.startswith("[setup] no Python >= 3.12 found") and "install Python 3.12" in line


@pytest.mark.dist
@pytest.mark.slow
def test_two_node_agents_on_one_machine(tmp_path):
    """Two torchrun agents (--nnodes 2, node ranks 0/1, rendezvous on 127.0.0.1) train PP=2."""
    env = {"MODEL": "tiny", "PP": "2", "NNODES": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(free_port()), "ITERS": "3", "SEQ": "256", "GBS": "4"}
    log = tmp_path / "log.jsonl"
    procs = []
    for rank in (0, 1):
        extra = ["--log-json", str(log)]  # (Megatron-LM's last rank writes it: node 1's)
        procs.append(subprocess.Popen(
            ["bash", os.path.join(ROOT, "scripts", "pretrain_gpt.sh"), *extra],
            env={**ENV, **env, "NODE_RANK": str(rank)}, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True))
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-2000:] + outs[1][-2000:]
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["iteration"] for r in rows] == [1, 2, 3]


@pytest.mark.parametrize("cores, env, layout", [
    ("2", {}, "layout cp2: TP=1 PP=1 CP=2 DP=1 (2 processes)"),
    ("7", {}, "layout cp2: TP=1 PP=1 CP=2 DP=1 (2 processes)"),
    ("8", {}, "layout 4d: TP=1 PP=2 CP=2 DP=2 (8 processes)"),
    ("64", {"LAYOUT": "dp2"}, "layout dp2: TP=1 PP=1 CP=1 DP=2 (2 processes)"),
    ("2", {"PP": "2", "CP": "2"}, "layout custom: TP=1 PP=2 CP=2 DP=1 (4 processes)"),
])
def test_quickstart_picks_the_layout_from_the_cores(cores, env, layout, tmp_path):
    proc = _sh("quickstart.sh", {"CORES": cores, "PRINT_LAYOUT": "1",
                                 "OUT_DIR": str(tmp_path), **env})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"[quickstart] {cores} cores -> {layout}"), proc.stdout


def test_quickstart_refuses_an_unknown_layout(tmp_path):
    proc = _sh("quickstart.sh", {"LAYOUT": "8d", "OUT_DIR": str(tmp_path)})
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "quickstart.sh: LAYOUT=8d unknown; choose cp2, dp2 or 4d (or set TP/PP/CP/DP)"]


def test_the_shells_cpu_flags_are_the_pythons():
    """scripts/_megatron.sh's DEVICE=cpu group is wlb.megatron.replica.CPU_FLAGS (the one
    Python definition the tools and tests use), plus the launchers' --threads."""
    from wlb.megatron.replica import CPU_FLAGS

    out = subprocess.run(["bash", "-c", 'source scripts/_megatron.sh; printf "%s\\n" '
                          '"${DEVICE_ARGS[@]}"'], capture_output=True, text=True, cwd=ROOT,
                         env={**ENV, "DEVICE": "cpu", "THREADS": "3"}, timeout=30)
    assert out.stdout.split() == [*CPU_FLAGS, "--threads", "3"], out.stderr


@pytest.mark.parametrize("python, want", [
    (sys.executable, ["--transformer-impl", "local", "--distributed-backend", "nccl",
                      "--no-rope-fusion", "--no-gradient-accumulation-fusion",
                      "--no-masked-softmax-fusion"]),  # here: no TE, no apex
    ("true", ["--transformer-impl", "transformer_engine", "--distributed-backend", "nccl"]),
])
def test_the_gpu_group_turns_off_the_fusions_whose_extension_is_missing(python, want):
    """Megatron-LM's defaults fuse RoPE (TE), weight-gradient accumulation and the masked
    softmax (apex's CUDA extensions); without them megatron stops at the model's build. A
    PYTHON that imports anything (``true``) stands for a machine with TE and apex."""
    out = subprocess.run(["bash", "-c", 'source scripts/_megatron.sh; printf "%s\\n" '
                          '"${DEVICE_ARGS[@]}"'], capture_output=True, text=True, cwd=ROOT,
                         env={**ENV, "DEVICE": "gpu", "PYTHON": python}, timeout=60)
    assert out.stdout.split() == want, out.stderr
