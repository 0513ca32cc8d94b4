"""Stock Megatron's sample order: megatron-core ``GPTDataset``'s document, sample and shuffle
indices, rewritten as plain numpy (``tests/data/test_megatron_samples.py`` checks them against
megatron-core's own ``_build_document_index``, ``helpers.build_sample_idx`` and
``_build_shuffle_index``), and the global batches they give.

Megatron builds the indices once for all the samples a run will train
(``--train-iters`` x ``--global-batch-size``):

1. **epochs**: the fewest whole passes over the documents that hold ``num_samples`` samples;
2. **document index**: the documents repeated once per epoch and shuffled *together* with a
   ``numpy.random.RandomState(seed)``, except that a final epoch of which fewer than 80% of the
   samples are needed is shuffled on its own after the others;
3. **sample index**: that document stream cut every ``seq_length`` tokens (the last partial
   sample dropped);
4. **shuffle index**: the samples permuted with the same random state (the separate final
   epoch's samples after the others').

Global batch b is samples ``shuffle[b*N : (b+1)*N]``. Our labels come from the documents, so a
sample holds ``seq_length`` tokens, not Megatron's ``seq_length + 1`` (its
``add_extra_token_to_sequence``); the cut points are otherwise the same.

Worked example: documents of 5 and 3 tokens, seq_length 4, num_samples 3 -> 8 tokens an epoch,
2 epochs (12 tokens needed); the final epoch supplies 1 of its 2 samples, < int(0.8 x 2), so it
is shuffled separately: document index e.g. [1, 0 | 1, 0] -> stream 3+5+3+5 = 16 tokens -> 4
samples, the first 2 (from the first epoch) shuffled among themselves, then the last 2.
"""

from __future__ import annotations

import numpy as np

from wlb.packing.stream import validate_lengths
from wlb.packing.types import Piece

#: a final epoch of which fewer than this fraction of the samples is needed is shuffled apart
SEPARATE_FINAL_EPOCH_BELOW = 0.80


def num_epochs(tokens_per_epoch: int, seq_length: int, num_samples: int) -> int:
    """Fewest epochs whose tokens hold ``num_samples`` samples of ``seq_length`` tokens."""
    return max(1, -(-num_samples * seq_length // tokens_per_epoch))


def document_index(num_docs: int, epochs: int, rs: np.random.RandomState,
                   separate_final_epoch: bool) -> np.ndarray:
    """Documents 0..num_docs-1 once per epoch, shuffled together (int32 [epochs x num_docs]);
    with ``separate_final_epoch`` the last epoch is shuffled after, and apart from, the rest."""
    if separate_final_epoch and epochs > 1:
        first = document_index(num_docs, epochs - 1, rs, False)
        return np.concatenate([first, document_index(num_docs, 1, rs, False)])
    idx = np.tile(np.arange(num_docs, dtype=np.int32), epochs)
    rs.shuffle(idx)
    return idx


def sample_index(lengths: np.ndarray, doc_index: np.ndarray, seq_length: int) -> np.ndarray:
    """Where each sample starts in the document stream: int64 [S + 1, 2] of (position in
    ``doc_index``, token offset in that document); sample s spans row s to row s + 1.

    Example: lengths [5, 3], doc_index [1, 0], seq_length 4 -> stream 3 + 5 tokens ->
    [[0, 0], [1, 1], [1, 5]] (the last row is the end of sample 1: position 1, offset 5); with
    lengths [4, 4] and doc_index [0, 1] the cut at token 4 is [0, 4], not [1, 0].
    """
    stream = np.cumsum(lengths[doc_index], dtype=np.int64)  # end of each stream position
    count = int(stream[-1]) // seq_length
    cuts = np.arange(count + 1, dtype=np.int64) * seq_length  # global token of each cut
    # the document each cut falls in; a cut at a document's end stays there (offset = its
    # length), as megatron-core's helper keeps it
    pos = np.searchsorted(stream, cuts, side="left")
    offset = cuts - (stream[pos] - lengths[doc_index[pos]])
    return np.stack([pos, offset], axis=1)


def shuffle_index(first: int, total: int, rs: np.random.RandomState) -> np.ndarray:
    """[0, first) shuffled, then [first, total) shuffled (uint32, as megatron-core's)."""
    dtype = np.uint32 if total < np.iinfo(np.uint32).max - 1 else np.int64
    head = np.arange(first, dtype=dtype)
    rs.shuffle(head)
    if first == total:
        return head
    tail = np.arange(first, total, dtype=dtype)
    rs.shuffle(tail)
    return np.concatenate([head, tail])


class _SampleStepper:
    """Global batch b = the pieces of global samples [b*N, (b+1)*N) in order (wrapping around
    after ``_size()`` samples); the state is the batch index."""

    n: int
    step: int
    piece_epochs: list[int]

    def _size(self) -> int:
        raise NotImplementedError

    def _pieces(self, g: int):
        """(doc, offset, length, epoch) of global sample ``g`` (0 <= g < _size())."""
        raise NotImplementedError

    def next_batch(self) -> list[Piece]:
        out: list[Piece] = []
        self.piece_epochs = []
        for g in range(self.step * self.n, (self.step + 1) * self.n):
            for doc, offset, length, epoch in self._pieces(g % self._size()):
                out.append(Piece(doc, offset, length, self.step))
                self.piece_epochs.append(epoch)
        self.step += 1
        return out

    def state_dict(self) -> dict:
        return {"step": self.step, "samples": self._size()}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


class StockSampleBatcher(_SampleStepper):
    """Global batches of stock Megatron: N samples each, in the shuffled sample order.

    A drop-in for :class:`wlb.packing.stream.GlobalBatcher` (``next_batch``, ``step``,
    ``piece_epochs``, state) whose batch b is the pieces of samples ``shuffle[b*N:(b+1)*N]``, in
    order; the stock packer's cut every ``seq_length`` tokens gives back exactly those samples.
    Past ``num_samples`` the order starts over (Megatron would have built more epochs).

    Args:
        lengths: document lengths (tokens).
        num_microbatches: N samples per global batch.
        seq_length: tokens per sample.
        num_samples: samples the run trains (iterations x N).
        seed: the random state's seed (Megatron's ``--seed``).
    """

    def __init__(self, lengths, num_microbatches: int, seq_length: int, num_samples: int,
                 seed: int) -> None:
        if num_samples <= 0:
            raise ValueError(f"num_samples={num_samples} must be > 0")
        self.lengths = validate_lengths(lengths)
        self.n, self.seq_length = int(num_microbatches), int(seq_length)
        tokens = int(self.lengths.sum())
        epochs = num_epochs(tokens, self.seq_length, num_samples)
        sans_final = (epochs - 1) * tokens // self.seq_length
        per_epoch = tokens // self.seq_length
        separate = epochs > 1 and (num_samples - sans_final
                                   < int(SEPARATE_FINAL_EPOCH_BELOW * per_epoch))
        rs = np.random.RandomState(seed)
        self.doc_index = document_index(len(self.lengths), epochs, rs, separate)
        self.sample_index = sample_index(self.lengths, self.doc_index, self.seq_length)
        total = len(self.sample_index) - 1
        self.shuffle = shuffle_index(sans_final if separate else total, total, rs)
        self.step = 0
        self.piece_epochs: list[int] = []

    def sample_pieces(self, s: int) -> list[tuple[int, int, int, int]]:
        """(doc, offset, length, epoch) of sample ``s``'s pieces, in stream order."""
        (p0, o0), (p1, o1) = self.sample_index[s], self.sample_index[s + 1]
        out = []
        for p in range(int(p0), int(p1) + 1):
            doc = int(self.doc_index[p])
            lo = int(o0) if p == p0 else 0
            hi = int(o1) if p == p1 else int(self.lengths[doc])
            if hi > lo:
                out.append((doc, lo, hi - lo, p // len(self.lengths)))
        return out

    def _size(self) -> int:
        return len(self.shuffle)

    def _pieces(self, g: int):
        return self.sample_pieces(int(self.shuffle[g]))


#: megatron-core builds each blended dataset this fraction larger than its share
MID_LEVEL_SURPLUS = 0.005


def blending_index(weights, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Megatron's weighted interleave of ``size`` samples: sample i comes from the dataset whose
    count lags its share ``w_k x max(i, 1)`` most (the first on ties).

    Returns:
        (dataset of each sample, its index among that dataset's samples).

    Example: weights [0.3, 0.7], size 5 -> datasets [1, 0, 1, 1, 0], samples [0, 0, 1, 2, 1].
    """
    w = np.asarray(weights, dtype=np.float64)
    counts = np.zeros(len(w), dtype=np.int64)
    which = np.zeros(size, dtype=np.int64)
    index = np.zeros(size, dtype=np.int64)
    for i in range(size):
        k = int(np.argmax(w * max(i, 1) - counts))
        which[i], index[i] = k, counts[k]
        counts[k] += 1
    return which, index


class StockBlendBatcher(_SampleStepper):
    """Global batches of stock Megatron over a weighted blend (``--data-path W1 P1 W2 P2``):
    each dataset's own shuffled samples (a :class:`StockSampleBatcher` of its
    ``ceil(ceil(num_samples x w_k) x 1.005)`` samples, as megatron-core's builder sizes them),
    interleaved by :func:`blending_index` (megatron-core ``BlendedDataset``).

    Args:
        parts: document lengths of each dataset's split, concatenated in this order in the
            document ids the pieces carry.
        weights: normalised blend weights.
        num_microbatches, seq_length, num_samples, seed: as :class:`StockSampleBatcher`.
    """

    def __init__(self, parts, weights, num_microbatches: int, seq_length: int,
                 num_samples: int, seed: int) -> None:
        self.n = int(num_microbatches)
        self.offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts])])
        self.parts = [
            StockSampleBatcher(p, num_microbatches, seq_length,
                               int(np.ceil(np.ceil(num_samples * w) * (1 + MID_LEVEL_SURPLUS))),
                               seed) if w > 0 else None
            for p, w in zip(parts, weights)]
        self.which, self.index = blending_index(weights, num_samples)
        self.step = 0
        self.piece_epochs: list[int] = []

    def _size(self) -> int:
        return len(self.which)

    def _pieces(self, g: int):
        k, i = int(self.which[g]), int(self.index[g])
        part = self.parts[k]
        for doc, offset, length, epoch in part.sample_pieces(int(part.shuffle[i % len(
                part.shuffle)])):
            yield int(self.offsets[k]) + doc, offset, length, epoch
