"""Document stream -> global batches, with a token budget of N x seq_length per batch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wlb.packing.types import Piece


class DataError(ValueError):
    """Bad document-length data (names the bad value)."""


def validate_lengths(lengths: Sequence, source: str = "lengths") -> np.ndarray:
    """Return lengths as int64 array, raising DataError naming the first bad value."""
    if len(lengths) == 0:
        raise DataError(f"{source}: no documents")
    for i, d in enumerate(lengths):
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)):
            raise DataError(f"{source}: document {i} has non-integer length {d!r}")
        if d <= 0:
            raise DataError(f"{source}: document {i} has length {d} (must be >= 1)")
    return np.asarray(lengths, dtype=np.int64)


class GlobalBatcher:
    """Cuts an ordered document stream into global batches of at most ``budget`` tokens.

    Two modes, matching the two families of packers:
        * ``split_at_budget=True`` (stock Megatron): the stream is a token stream; each batch holds
          exactly ``budget`` tokens and a document crossing the boundary is split there.
        * ``split_at_budget=False`` (whole-document packers): documents are taken in order while
          they fit in the budget; the first that does not fit opens the next batch. A document
          longer than ``max_piece`` is first cut into ``max_piece``-token pieces (the stated
          policy for over-long documents: split, never dropped).

    The order is file order, or a seeded permutation per epoch when ``shuffle``. What is
    permuted are the *pieces*: a document longer than ``max_piece`` contributes its
    ``max_piece``-token pieces (each its own attention unit) as separate items, so the pieces of a
    long document are spread over the epoch, as stock Megatron's sample shuffle spreads its
    samples, instead of filling consecutive global batches (a 757K-token document would fill
    ~90 batches in a row at 8 x 1K tokens per batch). Without ``shuffle`` they stay in document
    order, so file order is unchanged. With
    ``wrap_epochs`` (training) a batch that reaches the end of an epoch is topped up from the next
    epoch's order, so every batch is full and the stream never ends. State
    (epoch, position inside the order, offset inside the current document, batch index) is
    saved by :meth:`state_dict` so a resumed run continues exactly.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        budget: int,
        *,
        split_at_budget: bool,
        max_piece: int | None = None,
        shuffle: bool = False,
        seed: int = 0,
        wrap_epochs: bool = False,
    ) -> None:
        if budget <= 0:
            raise ValueError(f"token budget per global batch must be > 0, got {budget}")
        if max_piece is not None and max_piece <= 0:
            raise ValueError(f"max_piece must be > 0, got {max_piece}")
        self.lengths = validate_lengths(lengths)
        self.budget = int(budget)
        self.split_at_budget = split_at_budget
        self.max_piece = int(max_piece) if max_piece else None
        self.shuffle = shuffle
        self.seed = seed
        self.wrap_epochs = wrap_epochs
        self.epoch = 0
        self.pos = 0  # index into the epoch order (of pieces)
        self.offset = 0  # tokens of piece order[pos] already emitted
        # the pieces: (document, first token, tokens); one per document without a max_piece
        cap = self.max_piece
        counts = (np.ones(len(self.lengths), dtype=np.int64) if cap is None
                  else -(-self.lengths // cap))
        self._unit_doc = np.repeat(np.arange(len(self.lengths)), counts)
        first = np.cumsum(counts) - counts  # index of each document's first piece
        k = np.arange(len(self._unit_doc)) - np.repeat(first, counts)  # piece k of its document
        step = cap if cap is not None else 0
        self._unit_start = k * step
        self._unit_len = (self.lengths[self._unit_doc] - self._unit_start if cap is None
                          else np.minimum(cap, self.lengths[self._unit_doc] - self._unit_start))
        self.step = 0
        self._order = self._make_order()
        #: epoch of each piece of the last batch (a batch can straddle an epoch boundary)
        self.piece_epochs: list[int] = []

    def _make_order(self) -> np.ndarray:
        n = len(self._unit_doc)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n)

    @property
    def exhausted(self) -> bool:
        """True once every piece of the current epoch has been emitted."""
        return self.pos >= len(self._order)

    def next_epoch(self) -> None:
        self.epoch += 1
        self.pos, self.offset = 0, 0
        self._order = self._make_order()

    def next_batch(self) -> list[Piece]:
        """Pieces of the next global batch (fewer tokens at the end of an epoch; [] if done)."""
        out: list[Piece] = []
        self.piece_epochs = []
        room = self.budget
        while room > 0:
            if self.pos >= len(self._order):
                if not self.wrap_epochs:
                    break
                self.next_epoch()
            unit = int(self._order[self.pos])
            doc = int(self._unit_doc[unit])
            start = int(self._unit_start[unit]) + self.offset
            take = int(self._unit_len[unit]) - self.offset
            if take > room:
                if not self.split_at_budget:
                    if out:  # whole pieces only; the next batch opens with this one
                        break
                    # a piece larger than the whole budget (cap > budget): emit it alone
                else:
                    take = room
            out.append(Piece(doc, start, take, self.step))
            self.piece_epochs.append(self.epoch)
            room -= take
            self.offset += take
            if self.offset >= self._unit_len[unit]:
                self.pos += 1
                self.offset = 0
        self.step += 1
        return out

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos, "offset": self.offset, "step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.pos, self.offset = int(state["pos"]), int(state["offset"])
        self.step = int(state["step"])
        self._order = self._make_order()
