import json

import numpy as np
import pytest

from wlb.cost_model import CostModel, CostModelError
from wlb.metrics import imbalance, imbalance_floor


def test_explicit_coefficients_exact():
    cm = CostModel(2.0, 3.0, 1.0)
    assert cm.doc_workload(4) == 2 * 16 + 3 * 4 + 1
    np.testing.assert_allclose(cm.workloads([1, 4]), [6.0, 45.0])
    assert cm.total([1, 4]) == 51.0
    assert cm.attention([1, 4]) == 2.0 * 17


def test_default_is_llama7b_ratio():
    cm = CostModel.default()
    assert cm.linear_coef == 1.0
    assert cm.crossover_length() == pytest.approx(49408)


def test_from_flops_llama7b_matches_hand_ratio():
    # 32 layers, h=4096, ffn=11008 SwiGLU, MHA: linear/attention-per-d^2 ratio ~ 49408.
    cm = CostModel.from_flops(num_layers=32, hidden_size=4096, ffn_hidden_size=11008,
                              num_attention_heads=32)
    assert 1 / cm.attn_coef == pytest.approx(49408, rel=1e-3)


def test_from_flops_gqa_and_tp_cp_split():
    full = CostModel.from_flops(num_layers=2, hidden_size=64, ffn_hidden_size=256,
                                num_attention_heads=8, normalize=False)
    gqa = CostModel.from_flops(num_layers=2, hidden_size=64, ffn_hidden_size=256,
                               num_attention_heads=8, num_query_groups=2, normalize=False)
    split = CostModel.from_flops(num_layers=2, hidden_size=64, ffn_hidden_size=256,
                                 num_attention_heads=8, tensor_parallel_size=2,
                                 context_parallel_size=2, normalize=False)
    assert gqa.linear_coef < full.linear_coef  # smaller K/V projections
    assert gqa.attn_coef == full.attn_coef
    assert split.attn_coef == pytest.approx(full.attn_coef / 4)
    # hand count per layer: qkv 2*64*(64+128)=24576, out 8192, mlp 2*64*256*3=98304, attn d: 128
    assert full.linear_coef == pytest.approx(2 * (24576 + 8192 + 98304 + 128))
    with pytest.raises(CostModelError, match="num_query_groups=3"):
        CostModel.from_flops(num_layers=1, hidden_size=64, ffn_hidden_size=64,
                             num_attention_heads=8, num_query_groups=3)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "x"])
def test_bad_coefficients_rejected(bad):
    with pytest.raises(CostModelError, match="attn_coef"):
        CostModel(bad, 1.0)


def test_json_roundtrip_and_errors(tmp_path):
    p = tmp_path / "cm.json"
    CostModel(1e-5, 2.0, 3.0).to_json(p, fit_error=0.01)
    cm = CostModel.from_json(p)
    assert (cm.attn_coef, cm.linear_coef, cm.doc_coef) == (1e-5, 2.0, 3.0)
    p.write_text(json.dumps({"attn_coef": 1.0}))
    with pytest.raises(CostModelError, match="linear_coef"):
        CostModel.from_json(p)
    p.write_text(json.dumps({"attn_coef": -1.0, "linear_coef": 1.0}))
    with pytest.raises(CostModelError, match="-1.0"):
        CostModel.from_json(p)
    p.write_text("{not json")
    with pytest.raises(CostModelError, match="not valid JSON"):
        CostModel.from_json(p)
    with pytest.raises(CostModelError, match="not found"):
        CostModel.from_json(tmp_path / "missing.json")


def test_imbalance_definition():
    assert imbalance([1, 1, 1, 1]) == 1.0
    assert imbalance([4, 0, 0, 0]) == 4.0
    assert imbalance([3, 1]) == 1.5
    assert imbalance([]) == 1.0


def test_imbalance_floor_is_the_largest_piece_or_perfect_balance():
    assert imbalance_floor([6.0, 1.0, 1.0], 4) == 3.0  # the 6 alone: 3x the mean bin of 2
    assert imbalance_floor([1.0] * 8, 4) == 1.0  # 2 per bin is reachable
    assert imbalance_floor([], 4) == 1.0
    # no packing of the pieces beats the floor: brute force over all assignments of 5 pieces
    import itertools

    pieces = [5.0, 3.0, 2.0, 2.0, 1.0]
    best = min(imbalance([sum(p for p, b in zip(pieces, bins) if b == k) for k in range(3)])
               for bins in itertools.product(range(3), repeat=len(pieces)))
    assert best >= imbalance_floor(pieces, 3) - 1e-12
    assert imbalance_floor(pieces, 3) == 5.0 * 3 / 13


def test_one_flop_formula_for_the_cost_model_and_the_simulator():
    from wlb.cost_model import layer_gemm_flops
    from wlb.sim.model import MODELS

    assert layer_gemm_flops(4096, 4096, 11008) == 404_750_336  # LLaMA-7B, by hand
    m = MODELS["7b"]
    assert m.linear_flops_per_token(tp=4) == 404_750_336 / 4
    cost = CostModel.from_flops(num_layers=1, hidden_size=4096, ffn_hidden_size=11008,
                                num_attention_heads=32, normalize=False)
    # linear part: the GEMMs plus the causal diagonal's d term of attention (4h / 2 per token)
    assert cost.linear_coef == 404_750_336 + 2 * 4096 and cost.attn_coef == 2 * 4096
