"""The selector's kernel table and chooser by hand: log2-space bilinear interpolation, clamping,
NaN cells, tile padding, the file format, and the chooser's candidates."""

from __future__ import annotations

import json
import math

import pytest

from wlb.cp.selector import KernelTable, StrategyChooser, choose_strategy, predict_rank_us
from wlb.cp.shard import Segment, causal_pairs, per_seq_padding

NAN = float("nan")
# q_lens 1, 4, 16 x kv_lens 4, 16, 64; pairs/us chosen as powers of two so log2 is exact
TABLE = KernelTable("t", 1, (1, 4, 16), (4, 16, 64),
                    ((1.0, 4.0, 16.0), (2.0, 8.0, 32.0), (NAN, 16.0, 64.0)))


def test_grid_points_and_log_space_interpolation():
    assert TABLE._tput(4, 16) == 8.0
    assert TABLE._tput(1, 64) == 16.0
    # halfway in log2 between kv 4 and 16 (kv 8): sqrt(1 * 4) = 2 on row q=1
    assert TABLE._tput(1, 8) == pytest.approx(2.0)
    # halfway in both: geometric mean of the four corners 1, 4, 2, 8 -> 64 ** (1/4)
    assert TABLE._tput(2, 8) == pytest.approx(64 ** 0.25)
    # a quarter of the way (q = 4 ** 0.25) weights the q=1 row by 3/4
    assert TABLE._tput(4 ** 0.25, 4) == pytest.approx(2 ** 0.25)


def test_clamping_nan_cells_and_single_row_tables():
    assert TABLE._tput(0.5, 1) == 1.0  # below the grid: its first cell
    assert TABLE._tput(64, 1024) == 64.0  # above: its last cell
    # only the NaN cell has weight at (16, 4): the best measured cell of the row below, q=4
    assert TABLE._tput(16, 4) == 32.0
    # 3/4 of the way from q=4 to q=16 at kv=4: the NaN corner gets no weight, 2.0 remains
    assert TABLE._tput(4 * 4 ** 0.75, 4) == pytest.approx(2.0)
    one = KernelTable("one", 1, (8,), (8, 32), ((2.0, 8.0),))
    assert one._tput(8, 16) == pytest.approx(4.0) and one._tput(1, 8) == 2.0
    empty = KernelTable("e", 1, (1, 2), (1, 2), ((NAN, NAN), (NAN, NAN)))
    assert empty._tput(1, 1) == 1.0  # nothing measured: neutral throughput
    holes = KernelTable("h", 1, (1, 2), (1, 2), ((NAN, 3.0), (5.0, 7.0)))
    assert holes._tput(1, 1) == 3.0  # the corner alone is NaN: the best measured cell of its row


def test_segment_time_pads_queries_to_the_tile_and_sums_per_rank():
    t = KernelTable("tile", 4, (4, 8), (8, 16), ((2.0, 2.0), (2.0, 2.0)))
    # 5 queries -> 8 (tile 4), keys 13 -> 16: pairs 8*8 + 36 = 100 at 2 pairs/us
    assert t.segment_us(5, 13) == pytest.approx(causal_pairs(8, 16) / 2.0) == 50.0
    segs = [Segment(0, 0, 0, 4), Segment(1, 10, 3, 4)]  # keys 4 and 7
    assert predict_rank_us(segs, t) == pytest.approx(t.segment_us(4, 4) + t.segment_us(4, 7))
    assert causal_pairs(3, 7) == 18 and per_seq_padding([5, 4], 2) == 3


def test_table_file_format(tmp_path):
    d = {"backend": "b", "q_lens": [1, 4], "kv_lens": [4, 16], "pairs_per_us": [[1, 2], [3, 4]]}
    p = tmp_path / "t.json"
    p.write_text(json.dumps({"kernel_table": d, "attn_coef": 1}))  # inside a calibration file
    t = KernelTable.from_json(str(p))
    assert (t.backend, t.tile_q, t.q_lens, t.pairs_per_us[1]) == ("b", 1, (1, 4), (3.0, 4.0))
    p.write_text(json.dumps(d | {"tile_q": 128}))
    assert KernelTable.from_json(str(p)).tile_q == 128
    for bad, match in ((d | {"pairs_per_us": [[1, 2]]}, "shape"),
                       (d | {"pairs_per_us": [[1, 2], [3]]}, "shape"),
                       ({k: v for k, v in d.items() if k != "backend"}, "'backend'")):
        p.write_text(json.dumps(bad))
        with pytest.raises(ValueError, match=match):
            KernelTable.from_json(str(p))


def test_chooser_candidates_and_cp1():
    assert choose_strategy([5, 3], 1, TABLE) == ("per_seq", {})

    def pred(lens, cp, s):
        return [{"per_seq": 3.0, "per_doc": 2.0, "mixed": 1.0}[s]] * cp

    assert StrategyChooser(("per_doc",), 2, None)((5, 3)) == "per_doc"
    assert StrategyChooser(("per_seq", "per_doc"), 2, pred)((5, 3)) == "per_doc"
    assert StrategyChooser(("per_seq", "per_doc", "mixed"), 2, pred)((5, 3)) == "mixed"
    assert StrategyChooser(("per_doc", "mixed"), 1, None)((5, 3)) == "per_seq"
    with pytest.raises(ValueError, match=r"\('per_seq', 'per_doc'\) needs a latency predictor"):
        StrategyChooser(("per_seq", "per_doc"), 2, None)
    StrategyChooser(("per_seq", "per_doc"), 1, None)  # CP=1 needs none
    assert math.isfinite(choose_strategy([5, 3], 2, TABLE)[1]["per_doc"])
