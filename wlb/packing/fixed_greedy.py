"""The paper's Fixed-4D baseline: whole documents greedily repacked into fixed-length batches."""

from __future__ import annotations

from wlb.packing.base import Packer, register_packer
from wlb.packing.placement import Bins, greedy_place
from wlb.packing.types import MicroBatch, Piece


@register_packer("fixed-greedy")
class FixedGreedyPacker(Packer):
    """Whole pieces of one global batch, heaviest first, into the least-loaded micro-batch that
    has room under ``seq_length`` tokens (the fixed length); what fits nowhere is carried to the
    next batch (placed first there). Documents longer than seq_length are split beforehand."""

    name = "fixed-greedy"

    def __init__(self, num_microbatches: int, seq_length: int, cost_model) -> None:
        super().__init__(num_microbatches, seq_length, cost_model)
        self.carry: list[Piece] = []

    def _place(self, pieces: list[Piece]) -> list[MicroBatch]:
        w = self.cost.doc_workload
        new = sorted(pieces, key=lambda p: (-p.length, p.doc_id, p.offset))
        order = self.carry + new
        bins = Bins(self.n, self.max_tokens)
        self.carry = greedy_place(order, [w(p.length) for p in order], bins)
        return bins.pieces

    def pack(self, pieces: list[Piece]) -> list[MicroBatch]:
        return self._place(pieces)

    def flush(self) -> list[MicroBatch]:
        return self._place([]) if self.carry else []

    def pending(self) -> list[Piece]:
        return list(self.carry)

    def state_dict(self) -> dict:
        return {"name": self.name, "carry": [list(p) for p in self.carry]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.carry = [Piece(*p) for p in state["carry"]]
