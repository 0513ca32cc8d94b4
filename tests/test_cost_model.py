import json
import re

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


def test_from_flops_by_hand_without_normalisation():
    # L=2, h=8, 2 heads of 4, MHA (kv=8), ffn=16, vocab 10, plain MLP (2 matrices), TP=2, CP=2:
    # per layer GEMMs 2*8*(8+16) + 2*8*8 + 2*8*16*2 = 384 + 128 + 512 = 1024; attention 4h = 32
    # per pair, half of it on the diagonal's d term; logits 2*8*10 = 160.
    c = CostModel.from_flops(num_layers=2, hidden_size=8, ffn_hidden_size=16,
                             num_attention_heads=2, vocab_size=10, swiglu=False,
                             tensor_parallel_size=2, context_parallel_size=2, normalize=False)
    assert c.linear_coef == (2 * (1024 + 16) + 160) / 4
    assert c.attn_coef == 2 * 16 / 4 and c.doc_coef == 0.0 and c.source == "flops"
    swiglu = CostModel.from_flops(num_layers=1, hidden_size=8, ffn_hidden_size=16,
                                  num_attention_heads=2, normalize=False)
    assert swiglu.linear_coef == 384 + 128 + 2 * 8 * 16 * 3 + 16  # 3 MLP matrices
    gqa = CostModel.from_flops(num_layers=1, hidden_size=8, ffn_hidden_size=16,
                               num_attention_heads=4, num_query_groups=1, normalize=False)
    assert gqa.linear_coef == 2 * 8 * (8 + 2 * 2) + 128 + 768 + 16  # kv = 8 / 4 * 1 = 2
    norm = CostModel.from_flops(num_layers=2, hidden_size=8, ffn_hidden_size=16,
                                num_attention_heads=2, vocab_size=10, swiglu=False)
    assert norm.linear_coef == 1.0 and norm.attn_coef == pytest.approx(16 / (1040 + 80))


def test_from_flops_counts_the_routed_experts_by_hand():
    # h=8, MHA, SwiGLU, 4 experts of ffn 16, top-2: the MLP of 2 experts 2 * (2*8*16*3) = 1536,
    # the router 2*8*4 = 64; QKV 384 + output 128; attention's d term 16.
    moe = CostModel.from_flops(num_layers=1, hidden_size=8, ffn_hidden_size=999,
                               num_attention_heads=2, normalize=False, num_experts=4,
                               moe_router_topk=2, moe_ffn_hidden_size=16)
    assert moe.linear_coef == 384 + 128 + 1536 + 64 + 16
    dense = CostModel.from_flops(num_layers=1, hidden_size=8, ffn_hidden_size=16,
                                 num_attention_heads=2, normalize=False)
    assert moe.attn_coef == dense.attn_coef  # experts add no attention


@pytest.mark.parametrize("name, kw", [
    ("L", {"num_layers": 0}), ("h", {"hidden_size": -8}), ("ffn", {"ffn_hidden_size": 1.5}),
    ("heads", {"num_attention_heads": 0}),
])
def test_from_flops_names_the_bad_dimension(name, kw):
    args = dict(num_layers=1, hidden_size=8, ffn_hidden_size=16, num_attention_heads=2) | kw
    with pytest.raises(CostModelError, match=f"from_flops: {name}={list(kw.values())[0]!r} "):
        CostModel.from_flops(**args)


def test_default_crossover_and_vectorised_forms():
    d = CostModel.default()
    assert (d.attn_coef, d.linear_coef, d.doc_coef, d.source) == (1 / 49408, 1.0, 0.0,
                                                                  "default-llama7b-flops")
    assert d.crossover_length() == 49408.0
    assert CostModel(0.0, 1.0).crossover_length() == float("inf")
    assert CostModel(1.0, 3.0).crossover_length() == 3.0
    c = CostModel(2.0, 3.0, 5.0)
    big = 2**32  # d*d overflows int64 unless computed in float64
    assert c.workloads([4, big]).tolist() == [49.0, 2.0 * big * big + 3.0 * big + 5.0]
    assert c.attention([3, big]) == 2.0 * (9 + float(big) ** 2)
    assert c.total([1, 2]) == (2 + 3 + 5) + (8 + 6 + 5)


def test_json_messages_name_the_file_and_round_trip_extras(tmp_path):
    p = tmp_path / "c.json"
    for text, match in (('["x"]', "must hold a JSON object"), ("{", "not valid JSON"),
                        ('{"attn_coef": 1}', "lacks key(s) ['linear_coef']"),
                        ('{"attn_coef": 1, "linear_coef": -1}', "linear_coef=-1")):
        p.write_text(text)
        with pytest.raises(CostModelError, match=re.escape(repr(str(p)))) as e:
            CostModel.from_json(p)
        assert match in str(e.value)
    with pytest.raises(CostModelError, match=re.escape(repr(str(tmp_path / "no.json")))):
        CostModel.from_json(tmp_path / "no.json")
    p.write_text('{"attn_coef": 0.5, "linear_coef": 2}')  # doc_coef defaults to 0
    got = CostModel.from_json(p)
    assert (got.attn_coef, got.linear_coef, got.doc_coef, got.source) == (0.5, 2, 0.0,
                                                                          "json:c.json")
    CostModel(1.0, 2.0, 3.0).to_json(tmp_path / "out.json", note="héllo")
    text = (tmp_path / "out.json").read_text(encoding="utf-8")
    assert json.loads(text)["note"] == "héllo" and '\n  "attn_coef": 1.0' in text
