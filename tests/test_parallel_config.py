"""ParallelLayout and WLBConfig validation: clear errors naming the bad values."""

from __future__ import annotations

import argparse

import pytest

from wlb.config import ConfigError, WLBConfig
from wlb.parallel import LayoutError, ParallelLayout


def _layout(**kw):
    base = dict(world_size=8, tp=2, pp=2, cp=2, num_layers=4, num_attention_heads=4,
                num_query_groups=2, global_batch_size=8, seq_length=256)
    base.update(kw)
    return ParallelLayout(**base)


def test_valid_layout_derives_dp_and_padding():
    lay = _layout(world_size=16, sequence_parallel=True)
    assert lay.dp == 2 and lay.microbatches_per_rank == 4
    assert lay.pad_multiple == 2 * 2 * 2  # 2*cp * tp under SP


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(world_size=6), r"world_size=6 is not divisible by tp\*pp\*cp=8"),
        (dict(num_attention_heads=3, num_query_groups=3), "divisible by tp=2"),
        (dict(num_layers=3), r"num_layers=3 is not divisible by pp\*vpp=2"),
        (dict(global_batch_size=3, world_size=16), "global_batch_size=3 is not divisible by dp=2"),
        (dict(seq_length=250), "seq_length=250 must be a multiple of 4"),
        (dict(vpp=2, num_layers=8, global_batch_size=3, world_size=8),
         "multiple of pp=2"),
        (dict(tp=0), "tp=0 must be a positive integer"),
    ],
)
def test_bad_layouts_name_the_values(kw, match):
    with pytest.raises(LayoutError, match=match):
        _layout(**kw)


def test_wlb_flags_round_trip_and_defaults_are_wlb():
    p = argparse.ArgumentParser()
    WLBConfig.add_arguments(p)
    cfg = WLBConfig.from_args(p.parse_args([]))
    assert cfg.packing == "wlb" and cfg.cp_sharding == "adaptive" and not cfg.is_baseline
    cfg = WLBConfig.from_args(p.parse_args(["--wlb-packing", "megatron", "--wlb-cp-sharding",
                                            "per-seq", "--wlb-outlier-thresholds", "100,400"]))
    assert cfg.is_baseline and cfg.thresholds == (100, 400)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(packing="lpt"), "--wlb-packing='lpt'"),
        (dict(cp_sharding="ring"), "--wlb-cp-sharding='ring'"),
        (dict(outlier_thresholds="400,100"), "increasing"),
        (dict(outlier_thresholds="a,b"), "--wlb-outlier-thresholds='a,b'"),
        (dict(max_wait=0), "--wlb-max-wait=0"),
        (dict(max_tokens=-5), "--wlb-max-tokens=-5"),
    ],
)
def test_bad_wlb_options_name_the_flag(kw, match):
    with pytest.raises(ConfigError, match=match):
        WLBConfig(**kw)


@pytest.mark.parametrize("tp,cp,pp,dp", [(1, 1, 1, 4), (2, 2, 2, 2), (8, 2, 4, 1), (2, 4, 2, 3),
                                         (8, 16, 16, 4)])
def test_coordinates_are_megatron_cores_default_rank_order(tp, cp, pp, dp):
    """Each rank's (tp, cp, dp, pp) place is its index in megatron-core's own groups."""
    from megatron.core.parallel_state import RankGenerator

    layout = ParallelLayout(world_size=tp * cp * pp * dp, tp=tp, cp=cp, pp=pp,
                            num_layers=pp, num_attention_heads=tp, num_query_groups=tp,
                            global_batch_size=dp, seq_length=2 * cp)
    gen = RankGenerator(tp=tp, ep=1, dp=dp, pp=pp, cp=cp, order="tp-cp-ep-dp-pp")
    for token in ("tp", "cp", "dp", "pp"):
        for group in gen.get_ranks(token):
            for i, rank in enumerate(group):
                assert layout.coordinates(rank)[token] == i, (token, rank)
    with pytest.raises(LayoutError, match=f"rank={layout.world_size} is outside"):
        layout.coordinates(layout.world_size)
