"""Stock Megatron packing: the token stream cut into fixed seq_length samples (the baseline)."""

from __future__ import annotations

from wlb.packing.base import Packer, register_packer
from wlb.packing.types import MicroBatch, Piece


@register_packer("megatron")
class StockMegatronPacker(Packer):
    """Documents concatenated in order and cut every ``seq_length`` tokens.

    The global batch already holds exactly N x seq_length tokens (the batcher splits the crossing
    document at the budget), so micro-batch j is tokens [j*S, (j+1)*S) of the batch, with documents
    split at the cuts. Nothing is held back. Document-masked attention is applied per piece.
    """

    name = "megatron"
    split_at_budget = True

    @property
    def max_piece(self) -> int | None:
        return None

    def pack(self, pieces: list[Piece]) -> list[MicroBatch]:
        out: list[MicroBatch] = [[] for _ in range(self.n)]
        j, room = 0, self.seq_length
        for p in pieces:
            offset, left = p.offset, p.length
            while left > 0:
                if room == 0:
                    j, room = j + 1, self.seq_length
                if j >= self.n:  # more than N x S tokens: callers never do this
                    raise ValueError(f"global batch exceeds {self.n} x {self.seq_length} tokens")
                take = min(left, room)
                out[j].append(Piece(p.doc_id, offset, take, p.arrival))
                offset, left, room = offset + take, left - take, room - take
        return out
