import pytest

from wlb.packing import GlobalBatcher, OutlierQueues, Piece
from wlb.packing.ledger import LedgerError, TokenLedger
from wlb.packing.stream import DataError, validate_lengths


def P(doc, n, off=0, arr=0):
    return Piece(doc, off, n, arr)


def test_queue_levels_and_release():
    q = OutlierQueues([100, 200], release_count=2)
    assert [q.level(x) for x in (99, 100, 199, 200, 10**6)] == [-1, 0, 0, 1, 1]
    assert not q.push(P(0, 50))
    assert q.push(P(1, 150)) and q.push(P(2, 250))
    assert q.pop_ready() == []
    q.push(P(3, 120))
    assert [p.doc_id for p in q.pop_ready()] == [1, 3]  # FIFO, N at once
    assert len(q) == 1
    state = q.state_dict()
    q2 = OutlierQueues([100, 200], 2)
    q2.load_state_dict(state)
    assert q2.pending() == q.pending()
    assert [p.doc_id for p in q.flush()] == [2] and len(q) == 0
    with pytest.raises(ValueError, match="configured"):
        OutlierQueues([100], 2).load_state_dict(state)


@pytest.mark.parametrize("bad", [[200, 100], [100, 100], [0, 5], [1.5]])
def test_queue_thresholds_validated(bad):
    with pytest.raises(ValueError):
        OutlierQueues(bad, 2)


def test_ledger_detects_loss_and_duplicates():
    led = TokenLedger()
    led.consume([P(0, 10), P(1, 5)])
    led.train([P(0, 10)])
    with pytest.raises(LedgerError, match="document 1"):
        led.check()
    assert led.check(pending=[P(1, 5)])["pending_tokens"] == 5
    led.train([P(1, 5)])
    led.train([P(0, 4, off=2)])
    with pytest.raises(LedgerError, match="twice"):
        led.check()


def test_batcher_exact_budget_split_mode():
    b = GlobalBatcher([6, 6, 6], 8, split_at_budget=True)
    got = [[(p.doc_id, p.offset, p.length) for p in b.next_batch()] for _ in range(3)]
    assert got == [[(0, 0, 6), (1, 0, 2)], [(1, 2, 4), (2, 0, 4)], [(2, 4, 2)]]
    assert b.exhausted


def test_batcher_whole_documents_and_long_doc_split():
    b = GlobalBatcher([3, 4, 12, 2], 8, split_at_budget=False, max_piece=5)
    got = [[(p.doc_id, p.offset, p.length) for p in b.next_batch()] for _ in range(3)]
    assert got == [[(0, 0, 3), (1, 0, 4)], [(2, 0, 5)], [(2, 5, 5), (2, 10, 2)]]


def test_shuffle_spreads_the_pieces_of_a_long_document_over_the_epoch():
    """The pieces of a long document are shuffled as separate items (as Megatron shuffles its
    samples), not emitted back to back; every token is still emitted exactly once per epoch."""
    lengths = [3] * 200 + [100]  # document 200: twenty 5-token pieces
    b = GlobalBatcher(lengths, 10, split_at_budget=False, max_piece=5, shuffle=True, seed=1)
    batches, seen = [], []
    while not b.exhausted:
        batch = b.next_batch()
        batches.append({p.doc_id for p in batch})
        seen += [(p.doc_id, p.offset, p.length) for p in batch]
    long = [i for i, docs in enumerate(batches) if 200 in docs]
    assert len(long) >= 10 and long[-1] - long[0] > 3 * len(long)  # spread, not consecutive
    assert sorted(x for x in seen if x[0] == 200) == [(200, 5 * k, 5) for k in range(20)]
    assert sorted(x for x in seen if x[0] < 200) == [(d, 0, 3) for d in range(200)]
    # file order keeps a document's pieces in order and together
    f = GlobalBatcher(lengths, 10, split_at_budget=False, max_piece=5)
    order = []
    while not f.exhausted:
        order += [(p.doc_id, p.offset) for p in f.next_batch()]
    assert order[-20:] == [(200, 5 * k) for k in range(20)]


def test_shuffled_pieces_resume_mid_piece():
    def make():
        return GlobalBatcher([7, 23, 4, 31, 2], 6, split_at_budget=True, max_piece=None,
                             shuffle=True, seed=3, wrap_epochs=True)

    a = make()
    for _ in range(5):
        a.next_batch()
    b = make()
    b.load_state_dict(a.state_dict())
    for _ in range(30):
        assert b.next_batch() == a.next_batch()
    wlb = [GlobalBatcher([7, 23, 4, 31, 2], 12, split_at_budget=False, max_piece=5,
                         shuffle=True, seed=3, wrap_epochs=True) for _ in range(2)]
    for _ in range(7):
        wlb[0].next_batch()
    wlb[1].load_state_dict(wlb[0].state_dict())
    for _ in range(30):
        assert wlb[1].next_batch() == wlb[0].next_batch()


def test_batcher_shuffle_seeded_and_resumable():
    def make(seed=7):
        return GlobalBatcher(list(range(1, 50)), 30, split_at_budget=True, shuffle=True,
                             seed=seed, wrap_epochs=True)

    a, b = make(), make()
    assert a.next_batch() == b.next_batch()
    for _ in range(20):  # mid-document and mid-epoch
        a.next_batch()
    c = make()
    c.load_state_dict(a.state_dict())
    assert c.pos == a.pos and c.offset == a.offset and c.epoch == a.epoch
    # a resumed batcher continues exactly, across the next epoch boundaries (49 docs = 1225
    # tokens: an epoch every ~41 batches of 30)
    for _ in range(100):
        assert c.next_batch() == a.next_batch()
        assert c.piece_epochs == a.piece_epochs
    assert a.epoch >= 2
    # the state holds the position; the order comes from the config's seed
    d = make(seed=8)
    d.load_state_dict(a.state_dict())
    assert [d.next_batch() for _ in range(5)] != [a.next_batch() for _ in range(5)]


@pytest.mark.parametrize(
    "bad,match",
    [([], "no documents"), ([3, -1], "document 1 has length -1"),
     ([3, 2.5], "non-integer length 2.5"), ([True], "non-integer"), ([0], "length 0")],
)
def test_validate_lengths(bad, match):
    with pytest.raises(DataError, match=match):
        validate_lengths(bad)


def test_batcher_wraps_epochs_and_records_piece_epochs():
    b = GlobalBatcher([3, 4, 5], 8, split_at_budget=True, wrap_epochs=True)
    got = []
    for _ in range(3):
        got.append([(p.doc_id, p.offset, p.length) for p in b.next_batch()])
        got[-1] = (got[-1], list(b.piece_epochs))
    # 12 tokens per epoch; batches of 8 straddle the epoch boundary and are always full
    assert got == [([(0, 0, 3), (1, 0, 4), (2, 0, 1)], [0, 0, 0]),
                   ([(2, 1, 4), (0, 0, 3), (1, 0, 1)], [0, 1, 1]),
                   ([(1, 1, 3), (2, 0, 5)], [1, 1])]
    assert b.exhausted and b.epoch == 1  # the wrap happens lazily, at the next batch
    assert [(p.doc_id, p.length) for p in b.next_batch()] == [(0, 3), (1, 4), (2, 1)]
    assert b.piece_epochs == [2, 2, 2]


def test_packed_seq_lens_matches_the_collated_layout():
    from wlb.packing.types import packed_seq_lens

    assert packed_seq_lens([3, 2], 4) == (3, 2, 3)  # 5 tokens + a 3-token pad document
    assert packed_seq_lens([4, 4], 4) == (4, 4)  # already a multiple: no pad document
    assert packed_seq_lens([], 4) == (4,)  # an empty micro-batch is one pad document
    assert packed_seq_lens([], 1) == (2,)
