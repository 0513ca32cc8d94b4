"""The run's packer: outlier-threshold spelling ('auto' / 'none' / explicit) and the options."""

from __future__ import annotations

import numpy as np
import pytest

import wlb.packing.run_packer as run_packer
from wlb.cost_model import CostModel
from wlb.packing.autotune import auto_tune_outliers
from wlb.packing.run_packer import (
    AUTO_SAMPLE_FRACTION,
    build_run_packer,
    resolve_outliers,
    tune_cache_path,
)
from wlb.packing.stock import StockMegatronPacker
from wlb.packing.wlb import WLBPacker

COST = CostModel(attn_coef=1.0, linear_coef=100.0, doc_coef=0.0)
RESOLVE = {"num_microbatches": 4, "seq_length": 256, "cost_model": COST, "max_tokens": 300,
           "release": "count", "delay_budget": 1.0, "seed": 3}


def _lengths(seed=0, n=400):
    return np.random.default_rng(seed).integers(5, 300, size=n)


@pytest.mark.parametrize("spec", ["none", " NONE ", "None"])
def test_none_means_no_outlier_queues(spec):
    out = resolve_outliers(spec, _lengths(), **RESOLVE)
    assert (out.thresholds, out.source, out.tuned) == ([], "none", None)


@pytest.mark.parametrize("spec", ["100,200", " 100,200", [100, 200], (100, 200)])
def test_explicit_thresholds_are_given(spec):
    out = resolve_outliers(spec, _lengths(), **RESOLVE)
    assert (out.thresholds, out.source, out.tuned) == ([100, 200], "given", None)


@pytest.mark.parametrize("spec", ["200,100", "0,5", [-3], "100,100"])
def test_bad_thresholds_name_the_flag(spec):
    with pytest.raises(ValueError, match="--my-flag"):
        resolve_outliers(spec, _lengths(), name="--my-flag", **RESOLVE)
    with pytest.raises(ValueError, match="^outlier thresholds"):
        resolve_outliers(spec, _lengths(), **RESOLVE)


def test_auto_tunes_on_a_seeded_sample_of_the_lengths():
    """'auto' equals auto_tune_outliers on AUTO_SAMPLE_FRACTION of the lengths drawn with
    seed + 1, passing every packer argument through."""
    lengths = _lengths(1)
    out = resolve_outliers("auto", lengths, **RESOLVE)
    sample = np.random.default_rng(RESOLVE["seed"] + 1).choice(
        lengths, int(AUTO_SAMPLE_FRACTION * len(lengths)), replace=False)
    want = auto_tune_outliers(sample, num_microbatches=4, seq_length=256, cost_model=COST,
                              max_tokens=300, release="count", delay_budget=1.0, seed=3)
    assert out.source == "auto"
    assert out.tuned == want
    assert out.thresholds == want.thresholds
    assert resolve_outliers(" Auto", lengths, **RESOLVE) == out


def test_auto_draws_no_more_of_a_large_index_than_its_simulation_can_use(monkeypatch):
    """A 1M-document index: the sample is cut to twice the tokens of the simulated batches (150
    of 4 x 256 here), so start-up does not grow with the index; a small one is not cut."""
    seen = []
    monkeypatch.setattr(run_packer, "auto_tune_outliers",
                        lambda sample, **kw: seen.append((len(sample), int(sample.sum()),
                                                          kw["num_batches"])) or
                        auto_tune_outliers(sample[:50], **kw))
    resolve_outliers("auto", _lengths(2, 1_000_000), **RESOLVE)
    n, tokens, batches = seen[-1]
    assert batches == 150 and 2 * 150 * 4 * 256 <= tokens < 2 * 150 * 4 * 256 + 300
    resolve_outliers("auto", _lengths(2, 400), **RESOLVE)
    assert seen[-1][0] == int(AUTO_SAMPLE_FRACTION * 400)
    # a global batch of 64 x 128K tokens simulates AUTO_MIN_BATCHES batches, not 150
    resolve_outliers("auto", _lengths(2, 1000), **{**RESOLVE, "num_microbatches": 64,
                                                   "seq_length": 131072, "max_tokens": None})
    assert seen[-1][2] == run_packer.AUTO_MIN_BATCHES


def test_auto_is_kept_beside_the_dataset_and_read_back(tmp_path, monkeypatch):
    prefix = str(tmp_path / "corpus_text_document")
    lengths = _lengths(1)
    first = resolve_outliers("auto", lengths, **RESOLVE, cache_prefix=prefix)
    path = tune_cache_path(prefix, lengths, num_microbatches=4, seq_length=256,
                           cost_model=COST.to_dict(), max_tokens=300, release="count",
                           delay_budget=1.0, seed=3)
    assert [p.name for p in tmp_path.iterdir()] == [path.split("/")[-1]]
    assert first == resolve_outliers("auto", lengths, **RESOLVE)  # the cache changes nothing

    def no_tuning(*a, **k):
        raise AssertionError("tuned again")

    monkeypatch.setattr(run_packer, "auto_tune_outliers", no_tuning)
    assert resolve_outliers("auto", lengths, **RESOLVE, cache_prefix=prefix) == first
    # other lengths or another setting: another file, tuned anew
    for lens, kw in ((lengths[:-1], RESOLVE), (lengths, {**RESOLVE, "seed": 4})):
        with pytest.raises(AssertionError, match="tuned again"):
            resolve_outliers("auto", lens, **kw, cache_prefix=prefix)
    with open(path, "w") as f:  # a damaged file is tuned anew (and rewritten)
        f.write("{not json")
    monkeypatch.undo()
    assert resolve_outliers("auto", lengths, **RESOLVE, cache_prefix=prefix) == first
    assert resolve_outliers("auto", lengths, **RESOLVE,
                            cache_prefix=str(tmp_path / "missing" / "x")) == first  # unwritable


def test_auto_on_one_document_samples_at_least_one():
    out = resolve_outliers("auto", np.array([50]), **RESOLVE)
    assert out.source == "auto" and out.tuned is not None


def _build(packing, thresholds="none", max_wait=5, lengths=None):
    return build_run_packer(_lengths() if lengths is None else lengths, 4, 256, COST, 3,
                            packing=packing, max_tokens=300, thresholds=thresholds,
                            max_wait=max_wait, delay_budget=1.0, thresholds_label="given")


def test_stock_packer_takes_no_wlb_options():
    packer, info = _build("megatron", thresholds="100")
    assert isinstance(packer, StockMegatronPacker)
    assert info == {"packer": "megatron"}
    assert (packer.n, packer.seq_length) == (4, 256)


def test_wlb_packer_with_explicit_thresholds():
    packer, info = _build("wlb", thresholds="100,200", max_wait=7)
    assert isinstance(packer, WLBPacker)
    assert info == {"packer": "wlb", "thresholds": [100, 200], "thresholds_from": "given"}
    assert packer.queues.thresholds == [100, 200]
    assert (packer.max_wait, packer.max_tokens, packer.n) == (7, 300, 4)


def test_wlb_auto_takes_the_tuned_max_wait_capped_by_the_flag():
    lengths = _lengths(2)
    tuned = resolve_outliers("auto", lengths, **RESOLVE).tuned
    for cap in (1, tuned.max_wait, tuned.max_wait + 5):
        packer, info = _build("wlb", thresholds="auto", max_wait=cap, lengths=lengths)
        assert packer.max_wait == min(tuned.max_wait, cap)
        assert info["thresholds"] == tuned.thresholds == packer.queues.thresholds
        assert info["thresholds_from"] == "auto"
        assert info["sim_imbalance"] == tuned.imbalance_mean
        assert info["sim_delay"] == tuned.delay_iters_mean


def test_wlb_paper_packer_gets_thresholds_but_no_max_wait():
    packer, info = _build("wlb-paper", thresholds=[100])
    assert packer.name == "wlb-paper"
    assert packer.queues.thresholds == [100]
    assert info["thresholds"] == [100]
