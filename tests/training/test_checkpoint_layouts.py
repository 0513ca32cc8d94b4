"""torch_dist checkpoints (megatron-core dist_checkpointing) are layout-free.

A run saved under one layout resumes under another and continues the uninterrupted 1-process
run: a chain of four layouts (PP 2 with VPP, TP 2 with SP, CP 2, DP 2), two iterations each,
with WLB's outlier queues holding documents across every save; the token ledger over the whole
chain proves every document trained exactly once. The losses agree within the tolerance of
test_layouts.py (another layout sums in another order).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers.ledger import chain_ledger
from tests.helpers.torchrun import TINY, run_pretrain

pytestmark = [pytest.mark.dist, pytest.mark.slow]

ITERS = 8
# outlier queues on (documents held back across saves); the distributed optimizer in every leg
# (switching it on or off across a resume is refused: test_bad_input.py)
FLAGS = TINY + ["--wlb-packing", "wlb", "--wlb-cp-sharding", "per-doc",
                "--wlb-outlier-thresholds", "120,200", "--use-distributed-optimizer",
                "--train-iters", str(ITERS), "--lr-decay-iters", "10"]
LEGS = [
    ("pp2-vpp2", ["--pipeline-model-parallel-size", "2",
                  "--num-layers-per-virtual-pipeline-stage", "1"]),
    ("tp2-sp", ["--tensor-model-parallel-size", "2", "--sequence-parallel"]),
    ("cp2", ["--context-parallel-size", "2"]),
    ("dp2", []),
]


def test_a_run_continues_across_four_layouts(tmp_path):
    # the 1-process run without the distributed optimizer, shared with the tests below (with
    # it, the same losses: test_layouts.py's tp2-pp2-dp2-distopt)
    full = run_pretrain(1, [a for a in FLAGS if a != "--use-distributed-optimizer"],
                        str(tmp_path / "full.jsonl"))
    ck = str(tmp_path / "ck")
    chain, plan_logs, spans = [], [], []
    for k, (name, layout) in enumerate(LEGS):
        stop = 2 * (k + 1)
        plans = str(tmp_path / f"plans-{name}.jsonl")
        args = FLAGS + layout + ["--exit-interval", str(stop), "--save", ck, "--load", ck,
                                 "--log-plans", plans]
        rows = run_pretrain(2, args, str(tmp_path / f"{name}.jsonl"))
        assert [r["iteration"] for r in rows] == [stop - 1, stop], name
        chain += rows
        plan_logs.append(plans)
        spans.append((stop - 1, stop))
    with open(os.path.join(ck, "latest_checkpointed_iteration.txt")) as f:
        assert f.read() == str(ITERS)
    assert os.path.isfile(os.path.join(ck, f"iter_{ITERS:07d}", "metadata.json"))
    for a, b in zip(chain, full):
        assert a["tokens"] == b["tokens"] and a["loss_tokens"] == b["loss_tokens"]
        assert a["lm_loss"] == pytest.approx(b["lm_loss"], abs=1e-5), a["iteration"]
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9), a["iteration"]
    chain_ledger(plan_logs, spans, ITERS)


def test_without_the_optimizer_state_the_weights_and_data_position_carry_over(tmp_path):
    """--no-load-optim across a switch of the distributed optimizer: the weights and the data
    position are restored (the first resumed iteration is the uninterrupted one's), the Adam
    moments start again (so the next differ)."""
    base = [a for a in FLAGS if a != "--use-distributed-optimizer"]
    full = run_pretrain(1, base, str(tmp_path / "full.jsonl"))
    ck = str(tmp_path / "ck")
    run_pretrain(1, base + ["--exit-interval", "2", "--save", ck], str(tmp_path / "a.jsonl"))
    rows = run_pretrain(2, FLAGS + ["--load", ck, "--no-load-optim", "--exit-interval", "4"],
                        str(tmp_path / "b.jsonl"))
    assert [r["iteration"] for r in rows] == [3, 4]
    assert rows[0]["lm_loss"] == pytest.approx(full[2]["lm_loss"], abs=1e-5)
    assert rows[0]["tokens"] == full[2]["tokens"]
    assert abs(rows[1]["lm_loss"] - full[3]["lm_loss"]) > 1e-4


def test_finetune_loads_a_plain_megatron_core_checkpoint(tmp_path):
    """A checkpoint written by megatron-core alone (tests/helpers/plain_megatron.py: a GPTModel
    of megatron's local spec and dist_checkpointing, Megatron-LM's common keys) loads with
    --finetune: the same weights as loading ours give the same first loss."""
    import subprocess
    import sys

    from tests.helpers.torchrun import ENV, ROOT

    base = [a for a in FLAGS if a != "--use-distributed-optimizer"]
    ours = str(tmp_path / "ours")
    run_pretrain(1, base + ["--exit-interval", "2", "--save", ours], str(tmp_path / "a.jsonl"))
    plain = str(tmp_path / "plain")
    proc = subprocess.run([sys.executable, "-m", "tests.helpers.plain_megatron", ours, plain],
                          capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(plain, "latest_checkpointed_iteration.txt")) as f:
        assert f.read() == "2"
    first = {}
    for name, src in (("ours", ours), ("plain", plain)):
        rows = run_pretrain(1, base + ["--load", src, "--finetune", "--exit-interval", "1"],
                            str(tmp_path / f"{name}.jsonl"))
        assert [r["iteration"] for r in rows] == [1]
        first[name] = rows[0]["lm_loss"]
    fresh = run_pretrain(1, base, str(tmp_path / "fresh.jsonl"))[0]["lm_loss"]
    assert first["plain"] == pytest.approx(first["ours"], abs=1e-6)
    assert abs(first["ours"] - fresh) > 1e-3  # the weights were loaded, not initialized


def test_a_killed_worker_restarts_from_the_last_save(tmp_path):
    """scripts/pretrain_gpt.sh with SAVE and RESTARTS=1 (torchrun --max-restarts, --load =
    --save): SIGKILL in the middle of the iteration-4 save, torchrun restarts the job, it
    resumes from iteration 2 and finishes with the uninterrupted run's losses."""
    import contextlib
    import signal
    import subprocess

    from tests.helpers.torchrun import ENV, ROOT

    base = [a for a in FLAGS if a != "--use-distributed-optimizer"]
    full = run_pretrain(1, base, str(tmp_path / "full.jsonl"))
    ck, log = str(tmp_path / "ck"), str(tmp_path / "log.jsonl")
    env = {**ENV, "SAVE": ck, "SAVE_INTERVAL": "2", "RESTARTS": "1", "LOG_JSON": log,
           "WLB_TEST_CRASH": "save:4"}
    # output to a file, not a pipe: the killed worker's checkpoint-writer helper (megatron's
    # multiprocessing Manager) outlives it and would hold a pipe open; its session is ended after
    out = tmp_path / "out.txt"
    with open(out, "w") as f:
        proc = subprocess.Popen(["bash", os.path.join(ROOT, "scripts", "pretrain_gpt.sh"),
                                 *base], stdout=f, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)
        try:
            rc = proc.wait(timeout=300)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    assert rc == 0, out.read_text()[-3000:]
    with open(log) as f:
        rows = [r for r in map(json.loads, f) if r.get("kind") != "valid"]
    # attempt 1 logged 1..4 and died saving 4; attempt 2 resumed after 2
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4, 3, 4, 5, 6, 7, 8]
    last = {r["iteration"]: r for r in rows}
    for it, b in enumerate(full, start=1):
        assert last[it]["lm_loss"] == pytest.approx(b["lm_loss"], abs=1e-6), it
