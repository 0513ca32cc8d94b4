"""The collective index tensors of wlb.cp.layout against the docstring's hand-written case."""

from wlb.cp.layout import build_layout


def test_worked_example_per_doc_cp2():
    lay0 = build_layout((8, 6), 2, 0, "per_doc")
    lay1 = build_layout((8, 6), 2, 1, "per_doc")
    assert lay0.total == 14 and lay0.t_max == 7 and lay0.local_tokens == 7
    want_dst = [0, 1, 8, 9, 6, 7, 13, 2, 3, 10, 11, 4, 5, 12]
    for lay in (lay0, lay1):
        assert lay.src_rows.tolist() == list(range(14))
        assert lay.dst_pos.tolist() == want_dst
    assert [(s.doc, s.start, s.length) for s in lay1.segments] == [(0, 2, 2), (1, 2, 2),
                                                                   (0, 4, 2), (1, 4, 1)]


def test_uneven_ranks_leave_padding_rows_out():
    # per_seq over 5 tokens at CP=2: chunks of ceil(5/4)=2 are [0,2) [2,4) [4,5) [5,5); rank 0
    # holds chunks 0 and 3 ([0,1]), rank 1 chunks 1 and 2 ([2,3,4]); t_max=3, so rank 0's third
    # row (2) is padding and rank 1's rows are 3..5
    lay = build_layout((5,), 2, 0, "per_seq")
    assert lay.t_max == 3 and lay.local_tokens == 2
    assert lay.src_rows.tolist() == [0, 1, 3, 4, 5]
    assert lay.dst_pos.tolist() == [0, 1, 2, 3, 4]
