"""Bad input to the old loop (``pretrain_gpt_wlb.py``): one line, exit status 2, nothing built.

Its one-process pre-flight (what ``scripts/pretrain_gpt.sh`` ran before torchrun until the
launcher moved to Megatron-LM's loop, issue #36): stderr is exactly one line and stdout is
empty; under bare torchrun our line appears once (local rank 0), beside torchrun's own failure
summary. (These go with the old loop; Megatron-LM's loop has its own: tests/megatron.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers.torchrun import ENV, ROOT, TINY, launch_pretrain, run_pretrain

pytestmark = [pytest.mark.dist, pytest.mark.slow]
LINE = "pretrain_gpt_wlb.py: error: "


def _launcher(*args, env=None):
    """The old launcher's pre-flight: its tiny model at seq 256, 4 micro-batches, 1 iteration
    (``CP``, ``DATA_PATH`` from ``env``), in one process for the layout's world size."""
    env = env or {}
    cp = int(env.get("CP", "1"))
    data = ["--data-path", env["DATA_PATH"]] if "DATA_PATH" in env else ["--mock-data"]
    flags = [*data, "--num-layers", "4", "--hidden-size", "64", "--num-attention-heads", "4",
             "--group-query-attention", "--num-query-groups", "2", "--seq-length", "256",
             "--global-batch-size", "4", "--train-iters", "1", "--context-parallel-size",
             str(cp), "--wlb-packing", "wlb", "--wlb-cp-sharding", "adaptive", *args,
             "--preflight-only"]
    return subprocess.run([sys.executable, os.path.join(ROOT, "pretrain_gpt_wlb.py"), *flags],
                          capture_output=True, text=True, timeout=120,
                          env={**ENV, "WORLD_SIZE": str(cp), "LOCAL_RANK": "0"})


def _one_line(proc, match: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(LINE) and match in lines[0], proc.stderr
    assert proc.stdout == ""


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    ck = str(tmp_path_factory.mktemp("ck") / "ck")
    run_pretrain(1, TINY + ["--global-batch-size", "4", "--train-iters", "1", "--save", ck],
                 str(tmp_path_factory.mktemp("log") / "log.jsonl"))
    return ck


def _ck_copy(src, tmp_path):
    dst = str(tmp_path / "ck")
    shutil.copytree(src, dst)
    return dst, os.path.join(dst, "iter_0000001")


RESUME = ["--lr-decay-iters", "10", "--lr-warmup-iters", "1", "--seed", "7", "--no-wlb-shuffle",
          "--mock-num-docs", "400"]


@pytest.mark.parametrize("args, env, match", [
    (["--bogus-flag"], {}, "--bogus-flag is not supported yet"),
    (["--wlb-max-tokens", "100"], {}, "--wlb-max-tokens=100 is below --seq-length=256"),
    (["--max-position-embeddings", "128"], {}, "--seq-length=256 is above"),
    (["--max-position-embeddings", "300"], {}, "exceed --max-position-embeddings=300"),
    ([], {"CP": "3"}, "seq_length=256 must be a multiple of 6"),
    (["--wlb-cost-model", "/nonexistent.json"], {}, "/nonexistent.json"),
])
def test_bad_flags_and_layouts(args, env, match):
    _one_line(_launcher(*args, env=env), match)


def test_truncated_index_with_a_valid_header_is_named(tmp_path):
    from wlb.megatron.indexed import write_documents

    prefix = str(tmp_path / "c")
    write_documents(prefix, [np.arange(1, 9)] * 5, vocab_size=64, eod=0, tokenizer="t")
    with open(prefix + ".idx", "r+b") as f:
        f.truncate(os.path.getsize(prefix + ".idx") - 8)
    proc = _launcher("--data-path", prefix, "--vocab-size", "64", env={"DATA_PATH": prefix})
    _one_line(proc, f"{prefix}.idx has")


def test_checkpoint_problems_are_named(checkpoint, tmp_path):
    ck, it = _ck_copy(checkpoint, tmp_path)
    shard = sorted(f for f in os.listdir(it) if f.endswith(".distcp"))[0]
    with open(os.path.join(it, shard), "r+b") as f:  # a truncated shard file
        f.truncate(os.path.getsize(f.name) // 2)
    _one_line(_launcher(*RESUME, "--load", ck), f"{shard} is truncated")
    shutil.rmtree(ck)
    ck, it = _ck_copy(checkpoint, tmp_path)
    import torch

    # megatron-core reads a legacy common.pt in place of the common state in the shards
    torch.save({"iteration": 1}, os.path.join(it, "common.pt"))  # another program's
    _one_line(_launcher(*RESUME, "--load", ck), "not a checkpoint written by pretrain_gpt_wlb")
    os.remove(os.path.join(it, "common.pt"))
    os.remove(os.path.join(it, ".metadata"))  # the shards' index
    _one_line(_launcher(*RESUME, "--load", ck), "cannot read .metadata, the shards' index")


@pytest.mark.parametrize("args, match", [
    (["--ckpt-format", "torch"], "a torch_dist checkpoint, this run's --ckpt-format is torch"),
    (["--ckpt-step", "5"], "no checkpoint of iteration 5"),
    (["--global-batch-size", "8"], "saved with --global-batch-size 4"),
])
def test_a_checkpoint_this_run_cannot_resume_is_named(checkpoint, args, match):
    _one_line(_launcher(*RESUME, "--load", checkpoint, *args), match)


def test_a_missing_checkpoint_starts_fresh_unless_told_to_exit(tmp_path):
    empty = str(tmp_path / "empty")
    os.makedirs(empty)
    _one_line(_launcher(*RESUME, "--load", empty, "--exit-on-missing-checkpoint"),
              f"--load {empty}: no checkpoint there")
    ok = launch_pretrain(TINY + ["--load", empty, "--train-iters", "1"])
    assert ok.returncode == 0, ok.stderr[-1500:]
    assert f"warning: no checkpoint in --load {empty} yet; training from scratch" in ok.stdout


def test_a_different_lr_schedule_needs_megatrons_override_flags(checkpoint):
    proc = _launcher(*RESUME, "--lr", "1e-3", "--load", checkpoint)
    _one_line(proc, "--lr 0.0003 (saved) vs 0.001 (now)")
    assert "--override-opt-param-scheduler" in proc.stderr
    for flag in ("--override-opt-param-scheduler", "--use-checkpoint-opt-param-scheduler"):
        ok = launch_pretrain(TINY + ["--global-batch-size", "4", "--lr", "1e-3", "--load",
                                     checkpoint, flag, "--preflight-only"])
        assert ok.returncode == 0, ok.stderr[-1500:]


def test_under_torchrun_our_line_appears_once():
    proc = launch_pretrain(TINY + ["--wlb-max-tokens", "100"], nproc=2)
    assert proc.returncode != 0
    assert proc.stderr.count(LINE) == 1, proc.stderr[-3000:]
    assert "Apex is not installed" not in proc.stderr


def test_a_checkpoint_of_another_model_shape_is_one_line(checkpoint):
    """Found when the shards are read (after the model is built, before any step): the first
    differing tensor and both shapes."""
    proc = launch_pretrain(TINY + ["--global-batch-size", "4", "--hidden-size", "128",
                                   "--load", checkpoint])
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(LINE), proc.stderr
    assert ("decoder.final_layernorm.weight: shape (64,) in the checkpoint, (128,) in this "
            "run's model") in lines[0], lines[0]  # the first differing tensor, by key


def test_an_fp32_checkpoint_lacks_what_a_plain_bf16_optimizer_needs(checkpoint):
    """(With --use-distributed-optimizer it loads: test_checkpoint_layouts.py.)"""
    proc = launch_pretrain(TINY + ["--global-batch-size", "4", "--bf16", "--load", checkpoint])
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "saved without fp32 main parameters" in lines[0], proc.stderr
    assert "--use-distributed-optimizer" in lines[0]
