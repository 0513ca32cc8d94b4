from wlb.packing.release import match_release


def w(d):
    return d * d / 100 + d


def test_worked_example_pairs_two_docs_into_one_slot():
    lens = [128, 90, 90, 70]
    groups = match_release([w(d) for d in lens], lens, [0, 0, 0, 0], n=2, cap=200, rho=1.0,
                           tol=0.01, max_wait=10)
    assert groups[0] == [0]
    assert sorted(lens[i] for i in groups[1]) == [70, 90]


def test_waits_without_companions_then_forced():
    lens = [128, 10]
    args = dict(n=2, cap=200, rho=1.0, tol=0.01)
    assert match_release([w(d) for d in lens], lens, [3, 0], max_wait=10, **args) == []
    forced = match_release([w(d) for d in lens], lens, [10, 0], max_wait=10, **args)
    assert forced and forced[0] == [0]
