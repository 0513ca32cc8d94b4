"""Per-micro-batch stage latency, hardware profiles and model shapes of the cluster simulator."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from wlb.cp.selector import choose_strategy
from wlb.parallel import ParallelDims
from wlb.sim.hardware import FlashKernelModel, from_calibration, h100
from wlb.sim.latency import (
    attention_predictor,
    attention_rank_seconds,
    dp_sync_seconds,
    microbatch_times,
)
from wlb.sim.model import MODELS, PAPER_GRID, ModelSpec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HW = h100()
M7B = MODELS["7b"]


def test_model_sizes_match_their_names_and_the_launch_script():
    for name, expect in (("550m", 0.55e9), ("7b", 6.7e9), ("30b", 30e9), ("70b", 69e9)):
        assert MODELS[name].num_params() == pytest.approx(expect, rel=0.05)
        out = subprocess.run(["bash", "scripts/pretrain_gpt.sh"], cwd=ROOT, check=True,
                             capture_output=True, text=True,
                             env={**os.environ, "PRINT_MODEL_ARGS": "1", "MODEL": name})
        assert out.stdout.split() == MODELS[name].megatron_args()


def test_paper_grid_layouts_fit_their_models():
    for (name, _), layout in PAPER_GRID.items():
        m = MODELS[name]
        assert m.num_layers % (layout.pp * layout.vpp) == 0
        assert m.num_attention_heads % layout.tp == 0


def test_flash_kernel_pads_queries_to_the_tile():
    k = FlashKernelModel(peak_flops=400e12)
    # 1 query is padded to a 128-row tile ending at the same key: the cost of 128 queries
    assert k.segment_seconds(1, 4096 - 127, 1.0) == pytest.approx(k.segment_seconds(128, 4096, 1.0))
    assert k.segment_seconds(129, 4096, 1.0) > k.segment_seconds(128, 4096, 1.0)
    assert k.efficiency(256, 8192) > k.efficiency(128, 8192)  # TMA multicast step (Fig. 10)


def test_per_doc_balances_one_long_document_and_a_short_tail():
    lens = [100_000, 28_000]
    seq = attention_rank_seconds(lens, 2, "per_seq", M7B, 8, HW)
    doc = attention_rank_seconds(lens, 2, "per_doc", M7B, 8, HW)
    assert max(seq) / min(seq) > 2.0
    assert max(doc) / min(doc) == pytest.approx(1.0, abs=0.01)
    assert choose_strategy(lens, 2, attention_predictor(M7B, 8, HW))[0] == "per_doc"


def test_per_seq_wins_on_many_tiny_documents():
    """Paper §5.2: per-doc cuts 200-token documents into 25-token shards, wasting the tile."""
    assert choose_strategy([200] * 640, 4, attention_predictor(M7B, 8, HW))[0] == "per_seq"
    assert choose_strategy([200] * 640, 1, attention_predictor(M7B, 8, HW))[0] == "per_seq"


def test_stage_times_add_logits_to_the_last_stage_and_scale_with_tokens():
    layout = ParallelDims(tp=8, cp=2, pp=4, dp=1, vpp=2)
    t = microbatch_times([2048] * 32, "per_seq", M7B, layout, HW)
    assert len(t.fwd) == len(t.bwd) == 8
    assert t.fwd[-1] > t.fwd[0] and t.fwd[:-1] == (t.fwd[0],) * 7
    assert all(b > f for f, b in zip(t.fwd[:-1], t.bwd[:-1]))
    t2 = microbatch_times([2048] * 64, "per_seq", M7B, layout, HW)
    assert 1.8 < t2.total / t.total < 2.2  # linear work dominates short documents
    with pytest.raises(ValueError, match="do not split"):
        microbatch_times([8], "per_seq", M7B, ParallelDims(1, 1, 3, 1), HW)


def test_quadratic_document_dominates_at_long_context():
    layout = ParallelDims(tp=8, cp=2, pp=4, dp=1, vpp=2)
    one = microbatch_times([131072], "per_doc", M7B, layout, HW).total
    many = microbatch_times([2048] * 64, "per_doc", M7B, layout, HW).total
    assert one > 2 * many


def test_dp_sync_only_with_data_parallelism():
    assert dp_sync_seconds(M7B, ParallelDims(8, 2, 4, 1), HW) == 0.0
    assert dp_sync_seconds(M7B, ParallelDims(8, 2, 4, 2), HW) > 0.0


def test_calibrated_profile_reproduces_its_fit(tmp_path):
    """One process, CP=PP=1: the simulated micro-batch time is the calibration's own formula."""
    fit = {"attn_ms_per_d2": 2e-5, "linear_ms_per_token": 3e-3, "doc_ms": 0.2,
           "microbatch_ms": 4.0}
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({"attn_coef": 1.0, "linear_coef": 1.0, "fit_ms": fit,
                                "step_ms": 7.0}))
    model = ModelSpec("tiny", 2, 64, 256, 4, 4, vocab_size=256)
    hw = from_calibration(str(path), model)
    lens = [1000, 300, 17]
    t = microbatch_times(lens, "per_seq", model, ParallelDims(1, 1, 1, 1), hw)
    expect = (fit["attn_ms_per_d2"] * sum(d * (d + 1) for d in lens)
              + fit["linear_ms_per_token"] * sum(lens) + fit["doc_ms"] * len(lens)
              + fit["microbatch_ms"])
    assert t.total * 1e3 == pytest.approx(expect, rel=1e-9)
    assert hw.step_s == pytest.approx(7e-3)
    path.write_text(json.dumps({"attn_coef": 1.0, "linear_coef": 1.0}))
    with pytest.raises(ValueError, match="fit_ms"):
        from_calibration(str(path), model)


def test_a_gpu_calibration_of_another_model_carries_its_flop_rates_over(tmp_path):
    """A GPU's calibration of a small model (the file names the model and the device): the
    simulated micro-batch of *that* model reproduces the fit whichever model is asked for, a
    model twice as wide costs its FLOPs at the same achieved rate, and the links are h100()'s."""
    fit = {"attn_ms_per_d2": 2e-7, "linear_ms_per_token": 3e-4, "doc_ms": 0.01,
           "microbatch_ms": 0.5}
    timed = ModelSpec("timed", 2, 256, 512, 4, 2, vocab_size=512)
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({
        "attn_coef": 1.0, "linear_coef": 1.0, "fit_ms": fit, "step_ms": 9.0,
        "device": "NVIDIA H100 80GB HBM3",
        "model": {"num_layers": 2, "hidden_size": 256, "ffn_hidden_size": 512,
                  "num_attention_heads": 4, "num_query_groups": 2, "seq_length": 4096,
                  "padded_vocab_size": 512}}))
    one = ParallelDims(1, 1, 1, 1)
    lens = [1000, 300, 17]
    expect = (fit["attn_ms_per_d2"] * sum(d * (d + 1) for d in lens)
              + fit["linear_ms_per_token"] * sum(lens) + fit["doc_ms"] * len(lens)
              + fit["microbatch_ms"])
    for asked in (timed, M7B):
        hw = from_calibration(str(path), asked)
        assert microbatch_times(lens, "per_seq", timed, one, hw).total * 1e3 == pytest.approx(
            expect, rel=1e-9)
    assert hw.name == "NVIDIA H100 80GB HBM3-calibrated" and hw.step_s == 0.0
    for field in ("gpus_per_node", "intra_bw", "inter_bw", "comm_exposed", "bytes_per_elem"):
        assert getattr(hw, field) == getattr(HW, field)
    wide = ModelSpec("wide", 2, 512, 1024, 8, 4, vocab_size=512)
    gemm = [microbatch_times([64], "per_seq", m, one, hw).total for m in (timed, wide)]
    flops = [2 * m.linear_flops_per_token() + m.logit_flops_per_token() for m in (timed, wide)]
    attn = fit["attn_ms_per_d2"] * 64 * 65 * 1e-3  # the narrow model's: per pair FLOPs double
    rest = (fit["doc_ms"] + fit["microbatch_ms"]) * 1e-3
    assert (gemm[1] - rest - 2 * attn) / (gemm[0] - rest - attn) == pytest.approx(
        flops[1] / flops[0], rel=1e-9)


def test_calibration_samples_give_a_measured_attention_curve(tmp_path):
    """With samples, attention follows the measured single-document times (less the linear
    part), not the quadratic coefficient: a CPU's cost per pair grows with the working set."""
    fit = {"attn_ms_per_d2": 1e-5, "linear_ms_per_token": 1e-3, "doc_ms": 0.5,
           "microbatch_ms": 2.0}
    measured = {1024: 20.0, 2048: 120.0, 4096: 700.0}  # faster than quadratic growth
    samples = [{"doc_lens": [1, d], "ms": ms} for d, ms in measured.items()]
    samples.append({"doc_lens": [8, 64], "ms": 1.0})  # many-document rows are not on the curve
    path = tmp_path / "cal.json"
    path.write_text(json.dumps({"attn_coef": 1.0, "linear_coef": 1.0, "fit_ms": fit,
                                "samples": samples}))
    model = ModelSpec("tiny", 2, 64, 256, 4, 4, vocab_size=256)
    hw = from_calibration(str(path), model)
    for d, ms in measured.items():
        t = microbatch_times([d], "per_seq", model, ParallelDims(1, 1, 1, 1), hw)
        assert t.total * 1e3 == pytest.approx(ms, rel=1e-9)
    mid = microbatch_times([3000], "per_seq", model, ParallelDims(1, 1, 1, 1), hw).total * 1e3
    assert 120.0 < mid < 700.0
    # two documents: two attention curves and two per-document costs, one micro-batch cost
    two = microbatch_times([1024, 1024], "per_seq", model, ParallelDims(1, 1, 1, 1), hw).total * 1e3
    curve = 20.0 - 1e-3 * 1024 - fit["doc_ms"] - fit["microbatch_ms"]
    expect = 2 * curve + 2 * fit["doc_ms"] + 1e-3 * 2048 + fit["microbatch_ms"]
    assert two == pytest.approx(expect, rel=1e-9)


def test_several_calibrations_are_averaged(tmp_path):
    model = ModelSpec("tiny", 2, 64, 256, 4, 4, vocab_size=256)
    paths = []
    for n, scale in enumerate((1.0, 3.0)):
        fit = {"attn_ms_per_d2": 1e-5 * scale, "linear_ms_per_token": 1e-3 * scale,
               "doc_ms": 0.0, "microbatch_ms": 1.0 * scale}
        p = tmp_path / f"c{n}.json"
        p.write_text(json.dumps({"attn_coef": 1.0, "linear_coef": 1.0, "fit_ms": fit,
                                 "step_ms": 2.0 * scale}))
        paths.append(str(p))
    one = from_calibration(paths[0], model)
    mean = from_calibration(paths, model)
    assert mean.step_s == pytest.approx(4e-3)
    t1 = microbatch_times([500, 20], "per_seq", model, ParallelDims(1, 1, 1, 1), one).total
    tm = microbatch_times([500, 20], "per_seq", model, ParallelDims(1, 1, 1, 1), mean).total
    assert tm == pytest.approx(2 * t1)
