"""The logged ``cp_strategy`` counts are the strategies the attention actually ran."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest
import torch

from tests.helpers.dist import run_distributed
from tests.helpers.torchrun import TINY

pytestmark = [pytest.mark.dist, pytest.mark.slow]


def _predictor(doc_lens, cp_size, strategy):
    """A latency 'table' that sees the pad document: on a padded layout (total a multiple of
    2·CP = 4) the winner depends on the document count, on anything else per_seq wins. A
    chooser that logged one set of lengths and trained another would disagree with itself."""
    if sum(doc_lens) % 4:
        fast = "per_seq"
    else:
        fast = "per_doc" if len(doc_lens) % 2 else "mixed"
    return [1.0 if strategy == fast else 2.0] * cp_size


def _worker(rank, world, out_path):
    warnings.filterwarnings("ignore")
    import wlb.megatron.attention as mattn
    from wlb.cp.selector import StrategyChooser
    from wlb.training.arguments import parse
    from wlb.training.loop import train_step
    from wlb.training.setup import build

    ran: list[str] = []
    real = mattn.cp_attention

    def spy(q, k, v, doc_lens, group, strategy, *a):
        ran.append(strategy)
        return real(q, k, v, doc_lens, group, strategy, *a)

    mattn.cp_attention = spy
    cfg = parse(TINY + ["--context-parallel-size", "2", "--wlb-packing", "wlb",
                        "--wlb-outlier-thresholds", "none"])
    run = build(cfg)
    run.chooser = StrategyChooser(("per_seq", "per_doc", "mixed"), 2, _predictor)
    rows = []
    for _ in range(3):
        ran.clear()
        m = train_step(run, run.schedule.next_plan())
        rows.append((m["cp_strategy"], dict(Counter(ran))))
    if rank == 0:
        torch.save({"rows": rows, "layers": cfg.model.num_layers}, out_path)


def test_logged_strategies_are_the_ones_that_ran(tmp_path):
    out = tmp_path / "strategies.pt"
    run_distributed(_worker, 2, str(out))
    got = torch.load(out, weights_only=False)
    seen = set()
    for logged, calls in got["rows"]:
        # every layer's attention runs once per micro-batch in the forward (DP=1: all of them)
        ran = {s: n // got["layers"] for s, n in calls.items()}
        assert all(n % got["layers"] == 0 for n in calls.values()), calls
        assert logged == dict(sorted(ran.items())), (logged, ran)
        seen |= set(logged)
    assert len(seen) >= 2, seen  # the check means something: more than one strategy ran
