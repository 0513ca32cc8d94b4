"""``--wlb-global-batch megatron``: a WLB packer repacks stock Megatron's own global batches."""

from __future__ import annotations

import numpy as np
import pytest

from wlb.config import ConfigError, WLBConfig
from wlb.cost_model import CostModel
from wlb.packing import build_packer
from wlb.packing.schedule import PlanSchedule

COST = CostModel(attn_coef=0.01, linear_coef=1.0, doc_coef=0.0)
N, SEQ = 4, 64


def _schedule(name: str, lengths, *, megatron_batches: bool, shuffle: bool = True):
    kw = {"outlier_thresholds": []} if name == "wlb" else {}
    packer = build_packer(name, num_microbatches=N, seq_length=SEQ, cost_model=COST, **kw)
    return PlanSchedule(lengths, packer, 2, shuffle=shuffle, seed=5,
                        balance_dp=name != "megatron", num_samples=40 * N,
                        megatron_batches=megatron_batches)


def _tokens(plan) -> list[tuple[int, int, int]]:
    return sorted((p.doc_id, p.offset, p.length) for mb in plan.microbatches for p in mb)


def test_wlb_repacks_exactly_the_baselines_tokens_every_iteration():
    lengths = np.random.default_rng(0).integers(1, 150, size=120)
    stock = _schedule("megatron", lengths, megatron_batches=False)
    wlb = _schedule("wlb", lengths, megatron_batches=True)
    own = _schedule("wlb", lengths, megatron_batches=False)
    repacked = differs = same = 0
    for _ in range(12):
        s, w, o = stock.next_plan(), wlb.next_plan(), own.next_plan()
        assert wlb.last_pieces == stock.last_pieces  # the same global batch, piece for piece
        assert all(sum(p.length for p in mb) <= wlb.packer.max_tokens for mb in w.microbatches)
        same += _tokens(w) == _tokens(s)  # all of it trained now (no carry-over)
        repacked += w.digest() != s.digest()
        differs += _tokens(o) != _tokens(s)
    assert same == 12  # S_max = 1.25 x seq-length leaves room for every piece
    assert repacked >= 10  # WLB packed them its own way
    assert differs >= 10  # while its own document stream trains other tokens


def test_flag_is_refused_without_shuffle_and_warned_for_the_stock_packer():
    with pytest.raises(ConfigError, match="--no-wlb-shuffle"):
        WLBConfig(global_batch="megatron", shuffle=False)
    with pytest.raises(ConfigError, match="--wlb-global-batch='x'"):
        WLBConfig(global_batch="x")
    warn = WLBConfig(packing="megatron", cp_sharding="per-seq", global_batch="megatron")
    assert any("--wlb-global-batch" in w for w in warn.no_effect_warnings(1))
