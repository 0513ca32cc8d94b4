"""Reliability: bad input stops before work with the bad value named; crashes (SIGKILL, also in
the middle of a checkpoint save) resume to the uninterrupted run; exactly-once data; NaN stop;
determinism."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.golden.test_golden_runs import RUNS
from tests.helpers.ledger import chain_ledger
from tests.helpers.torchrun import ENV, ROOT, TINY, launch_pretrain, run_pretrain

pytestmark = [pytest.mark.dist, pytest.mark.slow]


# ---- bad input ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    src = d / "docs.jsonl"
    rng = np.random.default_rng(0)
    src.write_text("".join(json.dumps({"text": "x" * int(n)}) + "\n"
                           for n in rng.integers(20, 600, size=60)))
    prefix = str(d / "c")
    subprocess.run([sys.executable, "-m", "tools.preprocess_data", "--input",
                    str(src), "--output-prefix", prefix], check=True, env=ENV,
                   capture_output=True, cwd=ROOT)
    return prefix


def _data_args(prefix):
    return [a for a in TINY if a != "--mock-data"] + ["--data-path", prefix]


def _copy(prefix, dst):
    import shutil

    for ext in (".bin", ".idx", ".meta.json"):
        shutil.copy(prefix + ext, dst + ext)
    return dst


def test_indexed_corpus_trains(corpus, tmp_path):
    got = run_pretrain(1, _data_args(corpus), str(tmp_path / "log.jsonl"))
    assert len(got) == 3 and all(np.isfinite(r["lm_loss"]) for r in got)


@pytest.mark.parametrize("damage, match", [
    ("truncate-bin", "truncated or from another dataset"),
    ("garbage-idx", "cannot read"),
    ("missing-idx", ".idx not found"),
    ("bad-meta", "bad metadata"),
])
def test_damaged_dataset_is_named(corpus, tmp_path, damage, match):
    p = _copy(corpus, str(tmp_path / "d"))
    if damage == "truncate-bin":
        with open(p + ".bin", "r+b") as f:
            f.truncate(os.path.getsize(p + ".bin") - 7)
    elif damage == "garbage-idx":
        with open(p + ".idx", "wb") as f:
            f.write(b"not an index" * 10)
    elif damage == "missing-idx":
        os.remove(p + ".idx")
    else:
        with open(p + ".meta.json", "w") as f:
            f.write("{")
    proc = launch_pretrain(_data_args(p))
    assert proc.returncode == 2, proc.stderr[-1500:]
    assert match in proc.stderr and "Traceback" not in proc.stderr


def test_empty_dataset_is_refused(tmp_path):
    import torch  # noqa: F401  (megatron import order)
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    p = str(tmp_path / "empty")
    b = IndexedDatasetBuilder(p + ".bin", dtype=np.uint16)
    b.finalize(p + ".idx")
    with open(p + ".meta.json", "w") as f:
        json.dump({"vocab_size": 257, "eod": 256}, f)
    proc = launch_pretrain(_data_args(p))
    assert proc.returncode == 2 and "no documents" in proc.stderr, proc.stderr[-1500:]


@pytest.mark.parametrize("extra, match", [
    (["--wlb-max-tokens", "100"], "--wlb-max-tokens=100 is below --seq-length=256"),
    (["--wlb-cost-model", "COST"], "attn_coef=-1.0"),
    (["--context-parallel-size", "2", "--seq-length", "2"], "seq_length=2 must be a multiple"),
])
def test_bad_wlb_and_parallel_input(tmp_path, extra, match):
    cost = tmp_path / "cost.json"
    cost.write_text(json.dumps({"attn_coef": -1.0, "linear_coef": 1.0}))
    extra = [str(cost) if a == "COST" else a for a in extra]
    nproc = 2 if "--context-parallel-size" in extra else 1
    proc = launch_pretrain(TINY + extra, nproc=nproc)
    assert proc.returncode != 0
    assert match in proc.stderr, proc.stderr[-2000:]
    # one error line from our code, no traceback through it (torchrun adds its own summary)
    assert "pretrain_gpt_wlb.py: error:" in proc.stderr
    assert 'File "' + os.path.join(ROOT, "wlb") not in proc.stderr


def test_flags_without_effect_warn_once(tmp_path):
    proc = launch_pretrain(TINY + ["--wlb-packing", "megatron", "--wlb-outlier-thresholds",
                                   "100,200", "--train-iters", "1"])
    assert proc.returncode == 0, proc.stderr[-1500:]
    line = "--wlb-outlier-thresholds has no effect with --wlb-packing megatron"
    assert proc.stdout.count(line) == 1


def test_non_finite_loss_stops_without_a_nan_checkpoint(tmp_path):
    ck = tmp_path / "ck"
    proc = launch_pretrain(TINY + ["--lr", "1e6", "--clip-grad", "0", "--train-iters", "8",
                             "--save", str(ck), "--save-interval", "1"])
    assert proc.returncode == 3 and "non-finite" in proc.stderr, proc.stderr[-1500:]
    last = int((ck / "latest_checkpointed_iteration.txt").read_text())
    import torch
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    dcp_to_torch_save(ck / f"iter_{last:07d}", tmp_path / "whole.pt")  # the torch_dist shards
    state = torch.load(tmp_path / "whole.pt", weights_only=True)
    weights = [t for k, t in state.items() if "weight" in k and torch.is_tensor(t)]
    assert weights and all(torch.isfinite(t).all() for t in weights if t.is_floating_point())


# ---- crash / resume / exactly-once -------------------------------------------------------------
FLAGS = TINY + ["--wlb-packing", "wlb", "--wlb-outlier-thresholds", "120,200", "--wlb-max-wait",
                "3", "--pipeline-model-parallel-size", "2", "--mock-num-docs", "120"]
ITERS = 8


def _without(flags, name):
    i = flags.index(name)
    return flags[:i] + flags[i + 2:]


def _descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (torchrun puts its workers in their own sessions)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _lines(path: str) -> int:
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for _ in f)


def _run_killed_after(args, n_lines, log_json, timeout=240):
    """Start training; SIGKILL the whole job once ``n_lines`` iterations are logged."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           os.path.join(ROOT, "pretrain_gpt_wlb.py"), *args, "--log-json", log_json]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV,
                            cwd=ROOT)
    t0 = time.time()
    while time.time() - t0 < timeout and proc.poll() is None:
        if _lines(log_json) >= n_lines:
            for pid in [proc.pid, *_descendants(proc.pid)]:  # like a node failure: all at once
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()


@pytest.mark.parametrize("kill", ["after-5-iterations"])
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, kill):
    """SIGKILL to the whole job after N logged iterations (wherever it has got to: in a step,
    a save or between them), then a resume by hand; a kill in the middle of a save is
    test_a_worker_killed_in_a_save_restarts_the_job_from_the_last_one."""
    base = _without(FLAGS, "--train-iters") + ["--train-iters", str(ITERS), "--lr-decay-iters",
                                               "20"]
    full = run_pretrain(2, base, str(tmp_path / "full.jsonl"))
    ck, plans1, plans2 = str(tmp_path / "ck"), str(tmp_path / "p1.jsonl"), \
        str(tmp_path / "p2.jsonl")
    first = base + ["--save", ck, "--save-interval", "2", "--log-plans", plans1]
    # SIGKILL the whole job at whatever point it has reached after N logged iterations
    _run_killed_after(first, int(kill.split("-")[1]), str(tmp_path / "a.jsonl"))
    with open(os.path.join(ck, "latest_checkpointed_iteration.txt")) as f:
        resumed_at = int(f.read())
    assert resumed_at in (2, 4)
    second = run_pretrain(2, base + ["--load", ck, "--log-plans", plans2, "--save", ck],
                          str(tmp_path / "b.jsonl"))
    with open(tmp_path / "a.jsonl") as f:
        before = [r for r in map(json.loads, f) if r["iteration"] <= resumed_at]
    chain = before + second
    assert [r["iteration"] for r in chain] == list(range(1, ITERS + 1))
    for a, b in zip(chain, full):
        assert a["plan_digest"] == b["plan_digest"], a["iteration"]
        assert a["lm_loss"] == pytest.approx(b["lm_loss"], abs=1e-6), a["iteration"]
    chain_ledger([plans1, plans2], [(1, resumed_at), (resumed_at + 1, ITERS)], ITERS)


def test_a_worker_killed_in_a_save_restarts_the_job_from_the_last_one(tmp_path):
    """The old loop under torchrun --max-restarts 1 with --load = --save (what
    scripts/pretrain_gpt.sh's SAVE and RESTARTS=1 ran before it moved to Megatron-LM's loop):
    SIGKILL in the middle of the iteration-4 save (after the shards, before the rename:
    the fault hook WLB_TEST_CRASH, first attempt only); torchrun restarts the job, which resumes
    after iteration 2 (the half-written save is not used) and finishes by itself with the
    uninterrupted run's plans and losses; the ledger over both attempts' plan logs holds."""
    base = _without(FLAGS, "--train-iters") + ["--train-iters", str(ITERS), "--lr-decay-iters",
                                               "20"]
    full = run_pretrain(2, base, str(tmp_path / "full.jsonl"))
    ck, log, plans = str(tmp_path / "ck"), str(tmp_path / "log.jsonl"), str(tmp_path / "p.jsonl")
    env = {**ENV, "WLB_TEST_CRASH": "save:4"}
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
             "2", "--max-restarts", "1", os.path.join(ROOT, "pretrain_gpt_wlb.py"), *base,
             "--pipeline-model-parallel-size", "2", "--save", ck, "--save-interval", "2",
             "--load", ck, "--log-json", log, "--log-plans", plans], stdout=f,
            stderr=subprocess.STDOUT, env=env, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, out.read_text()[-3000:]
    with open(log) as f:
        rows = list(map(json.loads, f))
    # attempt 1 logged 1..4 and died saving 4; attempt 2 resumed after 2
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 3, 4, 5, 6, 7, 8]
    chain = rows[:2] + rows[4:]
    for a, b in zip(chain, full, strict=True):
        assert a["plan_digest"] == b["plan_digest"], a["iteration"]
        assert a["lm_loss"] == pytest.approx(b["lm_loss"], abs=1e-6), a["iteration"]
    with open(plans) as f:
        lines = f.readlines()
    (tmp_path / "p1.jsonl").write_text("".join(lines[:2]))
    (tmp_path / "p2.jsonl").write_text("".join(lines[4:]))
    chain_ledger([str(tmp_path / "p1.jsonl"), str(tmp_path / "p2.jsonl")], [(1, 2), (3, ITERS)],
                 ITERS)
    with open(os.path.join(ck, "latest_checkpointed_iteration.txt")) as f:
        assert f.read() == str(ITERS)


def test_same_seed_gives_bitwise_identical_losses(tmp_path):
    """Bitwise on purpose: the same machine, layout and kernel path twice (docs/reliability.md,
    "What is bitwise"); across machines the golden runs use a tolerance instead."""
    args = TINY + RUNS["cp2-wlb-adaptive"]  # the golden run's: this session may have run it
    a = run_pretrain(2, args, str(tmp_path / "a.jsonl"))
    b = run_pretrain(2, args, str(tmp_path / "b.jsonl"), reuse=False)  # a second process
    assert [(r["lm_loss"], r["grad_norm"]) for r in a] == [(r["lm_loss"], r["grad_norm"])
                                                           for r in b]
