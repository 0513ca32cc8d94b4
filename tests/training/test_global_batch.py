"""``--wlb-global-batch megatron`` trains the baseline's tokens every iteration, repacked: the
same losses as stock Megatron (the per-token loss is summed over the global batch)."""

from __future__ import annotations

import pytest

from tests.helpers.torchrun import BASELINE, TINY, WLB, run_pretrain

pytestmark = [pytest.mark.dist, pytest.mark.slow]


def test_wlb_on_megatrons_global_batches_gives_the_baselines_losses(tmp_path):
    flags = [*TINY, "--wlb-shuffle", "--clip-grad", "0"]
    stock = run_pretrain(1, [*flags, *BASELINE], str(tmp_path / "s.jsonl"))
    wlb = run_pretrain(1, [*flags, *WLB, "--wlb-global-batch", "megatron"],
                       str(tmp_path / "w.jsonl"))
    own = run_pretrain(1, [*flags, *WLB], str(tmp_path / "o.jsonl"))
    assert [r["tokens"] for r in wlb] == [r["tokens"] for r in stock]
    assert [r["plan_digest"] for r in wlb] != [r["plan_digest"] for r in stock]  # repacked
    for s, w in zip(stock, wlb):
        assert w["lm_loss"] == pytest.approx(s["lm_loss"], rel=1e-5)
        assert w["grad_norm"] == pytest.approx(s["grad_norm"], rel=1e-4)
    # its own document stream trains other tokens: the equality above is not a given
    assert any(abs(o["lm_loss"] - s["lm_loss"]) > 1e-3 for s, o in zip(stock, own))


def test_a_stock_checkpoint_continues_in_wlb_mode_and_back(tmp_path):
    """Stock (iteration 1) -> WLB on Megatron's batches (2) -> stock (3), through torch_dist
    checkpoints: the uninterrupted stock run's losses (the same tokens every iteration)."""
    flags = [*TINY, "--wlb-shuffle", "--clip-grad", "0"]
    stock = run_pretrain(1, [*flags, *BASELINE], str(tmp_path / "s.jsonl"))
    ck = str(tmp_path / "ck")
    legs = [BASELINE, [*WLB, "--wlb-global-batch", "megatron"], BASELINE]
    chain = []
    for it, arm in enumerate(legs, start=1):
        chain += run_pretrain(1, [*flags, *arm, "--exit-interval", str(it), "--save", ck,
                                  "--load", ck], str(tmp_path / f"leg{it}.jsonl"))
    assert [r["iteration"] for r in chain] == [1, 2, 3]
    assert [r["tokens"] for r in chain] == [r["tokens"] for r in stock]
    for s, c in zip(stock, chain):
        assert c["lm_loss"] == pytest.approx(s["lm_loss"], rel=1e-5), s["iteration"]
