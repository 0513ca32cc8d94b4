import json
import math

import pytest

from wlb.cp.selector import DEFAULT_TABLE, KernelTable, choose_strategy, predict
from wlb.cp.strategy import ALL_STRATEGIES


def flat_table(tmp_path, tput=10.0, tile=1):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"backend": "test", "tile_q": tile, "q_lens": [1, 1024],
                                "kv_lens": [1, 4096],
                                "pairs_per_us": [[tput, tput], [float("nan"), tput]]}))
    return KernelTable.from_json(str(path))


def test_flat_throughput_predicts_pairs(tmp_path):
    t = flat_table(tmp_path)
    # 4 queries at the end of a 10-key prefix: 4*6 + 4*5/2 = 34 pairs at 10 pairs/us
    assert t.segment_us(4, 10) == pytest.approx(3.4)


def test_tile_padding_charges_short_segments(tmp_path):
    t = flat_table(tmp_path, tile=128)
    # paper §5.3: s' = ceil(s/128)*128 queries after the same prefix p=127 -> s'*p + s'(s'+1)/2
    assert t.segment_us(1, 128) == pytest.approx((128 * 127 + 128 * 129 / 2) / 10.0)
    assert t.segment_us(1, 128) > 100 * flat_table(tmp_path).segment_us(1, 128)


def test_choice_follows_balance_when_throughput_is_flat(tmp_path):
    t = flat_table(tmp_path)
    lens = [4000] + [50] * 80  # one long document plus a short tail
    s, pred = choose_strategy(lens, 4, t)
    assert s == "per_doc" and pred["per_doc"] < pred["per_seq"]
    ranks = predict(lens, 4, "per_doc", t)
    assert max(ranks) / (sum(ranks) / 4) < 1.01


def test_choice_follows_efficiency_when_short_queries_are_slow(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"backend": "t", "q_lens": [1, 64, 1024], "kv_lens": [1, 64, 4096],
                                "pairs_per_us": [[0.01, 0.01, 0.01], [math.nan, 10, 10],
                                                 [math.nan, math.nan, 10]]}))
    t = KernelTable.from_json(str(path))
    lens = [16] * 64  # only short documents: per_doc cuts them into 2-token chunks
    assert choose_strategy(lens, 4, t)[0] == "per_seq"


def test_mixed_wins_a_long_document_with_a_tail_of_tiny_ones(tmp_path):
    """per_seq leaves the long document unbalanced, per_doc cuts the tiny ones into 2-token
    chunks; mixed shards only the long one per document."""
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"backend": "t", "q_lens": [1, 64, 1024], "kv_lens": [1, 64, 4096],
                                "pairs_per_us": [[0.01, 0.01, 0.01], [math.nan, 10, 10],
                                                 [math.nan, math.nan, 10]]}))
    t = KernelTable.from_json(str(path))
    lens = [16] * 64 + [4000] + [16] * 64
    s, pred = choose_strategy(lens, 4, t, ALL_STRATEGIES)
    assert s == "mixed" and pred["mixed"] < min(pred["per_seq"], pred["per_doc"])
    assert choose_strategy(lens, 4, t)[0] != "mixed"  # the paper's two by default


def test_shipped_cpu_table_loads_and_is_positive():
    t = KernelTable.from_json(DEFAULT_TABLE)
    assert t.segment_us(64, 1024) > 0
    assert t.segment_us(1024, 4096) > t.segment_us(64, 1024)


def test_bad_table_named(tmp_path):
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"backend": "x", "q_lens": [1], "kv_lens": [1]}))
    with pytest.raises(ValueError, match="pairs_per_us"):
        KernelTable.from_json(str(p))
