"""Elastic CP (``--wlb-elastic-cp``) in Megatron-LM's loop trains the stock arm's model.

Each slot's pieces are regrouped over a pipeline stage's DP x CP pool (``wlb.elastic.planner``);
a rank's micro-batch is its group's share, and the group's process group reaches WLB's
attention in ``PackedSeqParams.cp_group``. The same iterations as the stock arm (see
``test_wlb_arm.py``: WLB repacks stock Megatron's global batch) within 1e-5, on layouts where
the plan does regroup (its ``--log-json`` rows say so): DP 2 against the 1-process stock arm,
and PP 2 x VPP 2 x DP 2 (4 processes) against the stock arm at PP 2 x VPP 2 (megatron seeds
each stage's initialisation by its pipeline rank, not its DP rank).
"""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers.lm_runs import ENTRY, assert_same_losses, lm_losses
from tests.megatron.test_wlb_arm import REL, STOCK, VPP, WLB

pytestmark = [pytest.mark.dist, pytest.mark.slow]

CASES = {"dp2": (2, [], 1, []), "pp2-vpp2-dp2": (4, VPP, 2, VPP)}


@pytest.mark.parametrize("case", list(CASES))
def test_elastic_cp_trains_the_stock_arms_model(corpus, data_cache, case):
    nproc, flags, stock_nproc, stock_flags = CASES[case]
    log = os.path.join(data_cache, f"elastic-{case}.jsonl")
    if os.path.exists(log):
        os.remove(log)
    wlb = lm_losses(ENTRY, nproc, [*WLB, *flags, "--wlb-elastic-cp", "--log-json", log],
                    corpus, data_cache)
    stock = lm_losses(ENTRY, stock_nproc, [*STOCK, *stock_flags], corpus, data_cache)
    assert_same_losses(stock, wlb, REL, f"stock arm vs elastic CP at {case}")
    with open(log) as f:
        rows = [json.loads(x) for x in f]
    assert [r["iteration"] for r in rows] == [1, 2, 3]
    assert all(len(r["elastic_digest"]) == 16 and r["elastic_speedup_pred"] >= 1.0
               for r in rows)
    # regrouped: a group of two ranks where the layout (CP 1) has groups of one
    assert any(set(r["elastic_group_sizes"]) != {"1"} for r in rows), rows
