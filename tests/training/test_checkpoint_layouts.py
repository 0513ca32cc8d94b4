"""torch_dist checkpoints (megatron-core dist_checkpointing) are layout-free.

A run saved under one layout resumes under another and continues the uninterrupted 1-process
run: a chain of four layouts (PP 2 with VPP, TP 2 with SP, CP 2, DP 2), two iterations each,
with WLB's outlier queues holding documents across every save; the token ledger over the whole
chain proves every document trained exactly once. Plans, tokens and the validation micro-batches
are the same, the losses agree within the tolerance of test_layouts.py (another layout sums in
another order); this chain is also test_layouts.py's check of WLB under those four layouts.
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
FLAGS = TINY + ["--wlb-packing", "wlb", "--wlb-cp-sharding", "per-doc",
                "--wlb-outlier-thresholds", "120,200", "--use-distributed-optimizer",
                "--train-iters", str(ITERS), "--lr-decay-iters", "10",
                "--split", "80,20,0", "--eval-iters", "2", "--eval-interval", "2"]
PLAIN = [a for a in FLAGS if a != "--use-distributed-optimizer"]
LEGS = [
    ("pp2-vpp2", ["--pipeline-model-parallel-size", "2",
                  "--num-layers-per-virtual-pipeline-stage", "1"]),
    ("tp2-sp", ["--tensor-model-parallel-size", "2", "--sequence-parallel"]),
    ("cp2", ["--context-parallel-size", "2"]),
    ("dp2", []),
]


def _valid(path) -> list[dict]:
    with open(path) as f:
        return [r for r in map(json.loads, f) if r.get("kind") == "valid"]


def test_a_run_continues_across_four_layouts(tmp_path):
    # the 1-process run without the distributed optimizer, shared with the tests below (with
    # it, the same losses: test_layouts.py's tp2-pp2-dp2-distopt)
    full = run_pretrain(1, PLAIN, str(tmp_path / "full.jsonl"))
    full_valid = _valid(tmp_path / "full.jsonl")
    ck = str(tmp_path / "ck")
    chain, valid, plan_logs, spans = [], [], [], []
    for k, (name, layout) in enumerate(LEGS):
        stop = 2 * (k + 1)
        plans = str(tmp_path / f"plans-{name}.jsonl")
        args = FLAGS + layout + ["--exit-interval", str(stop), "--save", ck, "--load", ck,
                                 "--log-plans", plans]
        rows = run_pretrain(2, args, str(tmp_path / f"{name}.jsonl"))
        assert [r["iteration"] for r in rows] == [stop - 1, stop], name
        if name != "dp2":  # the digest also covers the DP assignment
            assert [r["plan_digest"] for r in rows] == [
                r["plan_digest"] for r in full[stop - 2:stop]], name
        chain += rows
        valid += _valid(tmp_path / f"{name}.jsonl")
        plan_logs.append(plans)
        spans.append((stop - 1, stop))
    with open(os.path.join(ck, "latest_checkpointed_iteration.txt")) as f:
        assert f.read() == str(ITERS)
    assert os.path.isfile(os.path.join(ck, f"iter_{ITERS:07d}", "metadata.json"))
    for a, b in zip(chain, full, strict=True):
        assert a["tokens"] == b["tokens"] and a["loss_tokens"] == b["loss_tokens"]
        assert a["lm_loss"] == pytest.approx(b["lm_loss"], abs=1e-5), a["iteration"]
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4), a["iteration"]
        assert a["lr"] == pytest.approx(b["lr"], rel=1e-9), a["iteration"]
    assert [v["iteration"] for v in valid] == [v["iteration"] for v in full_valid] == [2, 4, 6, 8]
    for a, b in zip(valid, full_valid):
        assert (a["valid_digest"], a["valid_tokens"]) == (b["valid_digest"], b["valid_tokens"])
        assert a["valid_lm_loss"] == pytest.approx(b["valid_lm_loss"], abs=1e-5)
    chain_ledger(plan_logs, spans, ITERS)


@pytest.fixture(scope="module")
def plain_at_2(tmp_path_factory) -> str:
    """A 1-process checkpoint of iteration 2 without the distributed optimizer, fp32."""
    out = tmp_path_factory.mktemp("plain")
    run_pretrain(1, PLAIN + ["--exit-interval", "2", "--save", str(out / "ck")],
                 str(out / "a.jsonl"))
    return str(out / "ck")


#: the optimizer-switch chain against its uninterrupted twin. The conversion is exact (every
#: tensor is read back as saved), so what differs is only the order of the DP gradient reduction
#: in iterations 3-4 (DP 2 there): measured at most 1.5e-7 relative in a gradient norm, 0 in a
#: loss, fp32 and bf16 alike, on an AVX2 EPYC (an uninterrupted DP 2 or distributed-optimizer
#: run differs from the 1-process one by as much). 1e-6 is the tolerance
#: of a run moved to another machine (tests/golden). It is not bf16's rounding (2^-9): main
#: parameters taken from the bf16-rounded weights instead of the saved fp32 ones move iteration
#: 4 by 4e-6 in the loss and 1e-4 in the gradient norm, and this test must see that.
SWITCH_REL = 1e-6


def _same(rows, ref, iterations, rel=SWITCH_REL):
    assert [r["iteration"] for r in rows] == iterations
    for a, b in zip(rows, ref[iterations[0] - 1:], strict=False):
        assert a["tokens"] == b["tokens"]
        assert a["lm_loss"] == pytest.approx(b["lm_loss"], rel=rel), a["iteration"]
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=rel), a["iteration"]


def test_the_distributed_optimizer_switches_on_and_off_across_resumes(tmp_path, plain_at_2):
    """The Adam state converts between megatron's two optimizers (wlb.megatron.optim_ckpt), so
    the run continues the uninterrupted one. bf16: the plain optimizer keeps fp32 main copies
    (``fp32_param``, the distributed one's ``param``); fp32: it has none, its fp32 weights are
    read as the distributed optimizer's main parameters (also when the run goes on in bf16)."""
    fulls = {}
    for name, dtype in (("fp32", []), ("bf16", ["--bf16"])):
        base = PLAIN + dtype
        full = run_pretrain(1, base, str(tmp_path / f"full-{name}.jsonl"))
        fulls[name] = full
        plain, dist = plain_at_2, str(tmp_path / f"dist-{name}")
        if dtype:
            plain = str(tmp_path / "plain-bf16")
            run_pretrain(1, base + ["--exit-interval", "2", "--save", plain],
                         str(tmp_path / "a.jsonl"))
        on = run_pretrain(2, FLAGS + dtype + ["--load", plain, "--save", dist, "--exit-interval",
                                              "4"], str(tmp_path / f"on-{name}.jsonl"))
        _same(on, full, [3, 4])
        off = run_pretrain(1, base + ["--load", dist, "--exit-interval", "6"],
                           str(tmp_path / f"off-{name}.jsonl"))
        _same(off, full, [5, 6])
    # fp32 without it -> bf16 with it. No uninterrupted run trains 2 iterations in fp32, then in
    # bf16; the twin is the same switch of precision from a checkpoint that holds the fp32 main
    # parameters explicitly: the distributed optimizer's, at iteration 2 of its fp32 run
    with_main = str(tmp_path / "dist-fp32-at-2")
    run_pretrain(1, FLAGS + ["--exit-interval", "2", "--save", with_main],
                 str(tmp_path / "b.jsonl"))
    twin = run_pretrain(1, FLAGS + ["--bf16", "--load", with_main, "--exit-interval", "4"],
                        str(tmp_path / "twin.jsonl"))
    bf16 = run_pretrain(1, FLAGS + ["--bf16", "--load", plain_at_2, "--exit-interval", "4"],
                        str(tmp_path / "fp32-to-bf16.jsonl"))
    _same(bf16, [None, None] + twin, [3, 4])
    # and the precision switch itself moves the run by bf16's rounding, not more
    _same(twin, fulls["fp32"], [3, 4], rel=1e-3)


def test_a_checkpoint_loads_without_its_optimizer_and_from_plain_megatron_core(tmp_path,
                                                                                plain_at_2):
    """One 1-process checkpoint (iteration 2, no distributed optimizer), loaded two ways.

    * ``--no-load-optim``: the weights and the data position are restored (the first resumed
      iteration is the uninterrupted one's), the Adam moments start again (so the next differs).
    * ``--finetune`` from a checkpoint written by megatron-core alone
      (tests/helpers/plain_megatron.py: a GPTModel of megatron's local spec that read ours with
      dist_checkpointing and wrote it back with Megatron-LM's common keys): the same weights as
      loading ours give the same first loss, also under TP 2 + SP and PP 2.
    """
    import subprocess
    import sys

    from tests.helpers.torchrun import ENV, ROOT

    base = PLAIN
    full = run_pretrain(1, base, str(tmp_path / "full.jsonl"))
    ours = plain_at_2

    rows = run_pretrain(1, base + ["--load", ours, "--no-load-optim", "--exit-interval", "4"],
                        str(tmp_path / "b.jsonl"))
    assert [r["iteration"] for r in rows] == [3, 4]
    assert rows[0]["lm_loss"] == pytest.approx(full[2]["lm_loss"], abs=1e-5)
    assert rows[0]["tokens"] == full[2]["tokens"]
    assert abs(rows[1]["lm_loss"] - full[3]["lm_loss"]) > 1e-4

    # --use-checkpoint-args: the model's shape from the checkpoint (the defaults differ: hidden
    # 128, MHA), the run continues the uninterrupted one
    shape = {"--num-layers", "--hidden-size", "--num-attention-heads", "--num-query-groups"}
    bare = [a for i, a in enumerate(base) if a not in shape and base[i - 1] not in shape
            and a != "--group-query-attention"]
    assert "--hidden-size" not in bare and len(bare) == len(base) - 9
    rows = run_pretrain(1, bare + ["--load", ours, "--use-checkpoint-args", "--exit-interval",
                                   "3"], str(tmp_path / "c.jsonl"))
    _same(rows, full, [3])

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
    assert first["plain"] == pytest.approx(first["ours"], abs=1e-6)
    assert abs(first["ours"] - full[0]["lm_loss"]) > 1e-3  # the weights were loaded
    # the megatron-core checkpoint resharded: TP 2 with sequence parallelism and PP 2
    rows = run_pretrain(4, base + ["--load", plain, "--finetune", "--exit-interval", "1",
                                   "--tensor-model-parallel-size", "2", "--sequence-parallel",
                                   "--pipeline-model-parallel-size", "2"],
                        str(tmp_path / "plain-tp2-pp2.jsonl"))
    assert rows[0]["lm_loss"] == pytest.approx(first["ours"], abs=1e-5)
