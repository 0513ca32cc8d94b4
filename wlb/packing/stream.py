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

    The order is file order, or a seeded permutation per epoch when ``shuffle``. With
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
        self.pos = 0  # index into the epoch order
        self.offset = 0  # tokens of order[pos] already emitted
        self.step = 0
        self._order = self._make_order()
        #: epoch of each piece of the last batch (a batch can straddle an epoch boundary)
        self.piece_epochs: list[int] = []

    def _make_order(self) -> np.ndarray:
        n = len(self.lengths)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n)

    @property
    def exhausted(self) -> bool:
        """True once every document of the current epoch has been emitted."""
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
        lengths, cap = self.lengths, self.max_piece
        while room > 0:
            if self.pos >= len(self._order):
                if not self.wrap_epochs:
                    break
                self.next_epoch()
            order = self._order
            doc = int(order[self.pos])
            left = int(lengths[doc]) - self.offset
            take = left if cap is None else min(left, cap)
            if take > room:
                if not self.split_at_budget:
                    if out:  # whole documents only; the next batch opens with this one
                        break
                    # a piece larger than the whole budget (cap > budget): emit it alone
                else:
                    take = room
            out.append(Piece(doc, self.offset, take, self.step))
            self.piece_epochs.append(self.epoch)
            room -= take
            self.offset += take
            if self.offset >= lengths[doc]:
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
