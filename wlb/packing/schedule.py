"""The per-iteration plan: global batch -> packer -> micro-batches -> DP ranks.

Every rank builds the same :class:`PlanSchedule` and calls :meth:`next_plan` once per iteration,
so no plan is broadcast; ``BatchPlan.digest()`` lets a run prove that ranks agree. The packing
simulator (:mod:`wlb.packing.simulate`) drives the same schedule over a finite stream.
"""

from __future__ import annotations

import time

from wlb.packing.base import Packer
from wlb.packing.stock_samples import StockBlendBatcher, StockSampleBatcher
from wlb.packing.stream import GlobalBatcher
from wlb.packing.types import BatchPlan, MicroBatch, assign_dp_ranks, microbatch_workloads


def deal_to_dp_ranks(mbs: list[MicroBatch], dp_size: int, packer: Packer, *,
                     balance: bool) -> list[int]:
    """DP rank of every micro-batch, N/DP each.

    ``balance`` (WLB) deals by workload (:func:`wlb.packing.types.assign_dp_ranks`); otherwise
    interleaved, as stock Megatron's pretraining sampler with a micro-batch size of 1: of each
    run of DP consecutive samples, rank r takes the r-th. Example: N=6, DP=2 -> [0,1,0,1,0,1].
    """
    if balance:
        return assign_dp_ranks(microbatch_workloads(mbs, packer.cost), dp_size)
    return [j % dp_size for j in range(len(mbs))]


class PlanSchedule:
    """Endless stream of BatchPlans over ``lengths`` (epochs wrap; seeded order per epoch).

    Args:
        lengths: document lengths (tokens).
        packer: a fresh packer (N = micro-batches per iteration over all DP ranks).
        dp_size: DP ranks; micro-batches are dealt N/dp per rank.
        shuffle, seed: seeded document order per epoch.
        balance_dp: deal micro-batches to DP ranks by workload (WLB); False interleaves them as
            Megatron's sampler does (see :func:`deal_to_dp_ranks`).
        wrap_epochs: endless (training); False ends at the last document (the simulator).
        num_samples: the samples a run trains (iterations x N). Given, with ``shuffle``, the
            stock packer's global batches are stock Megatron's: N samples each in megatron-core
            ``GPTDataset``'s shuffled sample order (:mod:`wlb.packing.stock_samples`).
        blend: (document lengths of each dataset, weights) when ``lengths`` is a weighted blend's
            datasets one after another: the stock packer's batches then interleave each
            dataset's samples as megatron-core's ``BlendedDataset`` does.
        megatron_batches: give any packer stock Megatron's global batches (the pieces of its
            shuffled samples, as above) instead of the document stream, so that a WLB packer
            repacks exactly the tokens the baseline trains (``--wlb-global-batch megatron``).
    """

    def __init__(self, lengths, packer: Packer, dp_size: int, *, shuffle: bool, seed: int,
                 balance_dp: bool, wrap_epochs: bool = True,
                 num_samples: int | None = None, blend=None,
                 megatron_batches: bool = False) -> None:
        self.packer = packer
        self.dp_size = dp_size
        self.balance_dp = balance_dp
        stock = ((packer.name == "megatron" or megatron_batches) and shuffle
                 and num_samples is not None)
        if stock and blend is not None:
            self.batcher = StockBlendBatcher(blend[0], blend[1], packer.n, packer.seq_length,
                                             num_samples, seed)
        elif stock:
            self.batcher = StockSampleBatcher(lengths, packer.n, packer.seq_length, num_samples,
                                              seed)
        else:
            self.batcher = GlobalBatcher(
                lengths, packer.n * packer.seq_length, split_at_budget=packer.split_at_budget,
                max_piece=packer.max_piece, shuffle=shuffle, seed=seed, wrap_epochs=wrap_epochs,
            )
        # epoch of every consumed piece not yet fully trained: (doc, arrival) -> [[offset, length,
        # epoch, tokens left]]; a list because a batch straddling an epoch boundary can hold the
        # same document twice, and a packer may cut a piece further (megatron's sample cuts)
        self._epochs: dict[tuple[int, int], list[list[int]]] = {}
        #: [epoch, doc, offset, length] of what the last plan consumed and trained (plan log)
        self.last_consumed: list[list[int]] = []
        self.last_trained: list[list[list[int]]] = []
        #: the pieces the last plan consumed, and milliseconds its packer took
        self.last_pieces: list = []
        self.last_pack_ms = 0.0

    def next_plan(self) -> BatchPlan | None:
        """The next iteration's plan; None only without ``wrap_epochs`` once the data ended."""
        step = self.batcher.step
        pieces = self.batcher.next_batch()
        if not pieces:
            return None
        self.last_pieces = pieces
        self.last_consumed = []
        for p, ep in zip(pieces, self.batcher.piece_epochs):
            self._epochs.setdefault((p.doc_id, p.arrival), []).append(
                [p.offset, p.length, ep, p.length])
            self.last_consumed.append([ep, p.doc_id, p.offset, p.length])
        t0 = time.perf_counter()
        mbs = self.packer.pack(pieces)
        self.last_pack_ms = (time.perf_counter() - t0) * 1e3
        self.last_trained = [[[self._pop_epoch(p), p.doc_id, p.offset, p.length] for p in mb]
                             for mb in mbs]
        return BatchPlan(step, mbs, self.deal(mbs))

    def deal(self, mbs: list[MicroBatch]) -> list[int]:
        """DP rank of every micro-batch of ``mbs`` under this schedule's rule."""
        return deal_to_dp_ranks(mbs, self.dp_size, self.packer, balance=self.balance_dp)

    def _find(self, p) -> list[int]:
        """The consumed record ``p`` came from: the one with exactly its span and untouched
        first (a batch that straddles epochs can hold the same document twice, at the same
        offsets), else the one whose span holds its offset (a piece cut further by the packer)."""
        entries = self._epochs.get((p.doc_id, p.arrival), [])
        for entry in entries:
            if entry[0] == p.offset and entry[1] == entry[3] == p.length:
                return entry
        for entry in entries:
            if entry[0] <= p.offset < entry[0] + entry[1] and entry[3] > 0:
                return entry
        raise KeyError(f"piece {p} was never consumed")

    def _pop_epoch(self, p) -> int:
        entry = self._find(p)
        entry[3] -= p.length
        if entry[3] <= 0:
            entries = self._epochs[(p.doc_id, p.arrival)]
            entries.remove(entry)
            if not entries:
                del self._epochs[(p.doc_id, p.arrival)]
        return entry[2]

    def pending_with_epochs(self) -> list[list[int]]:
        """[epoch, doc, offset, length] of every piece the packer still holds."""
        return [[self._find(p)[2], p.doc_id, p.offset, p.length] for p in self.packer.pending()]

    def state_dict(self) -> dict:
        return {"batcher": self.batcher.state_dict(), "packer": self.packer.state_dict(),
                "epochs": [[*k, *e] for k, v in self._epochs.items() for e in v]}

    def load_state_dict(self, state: dict, *, packer: bool = True) -> None:
        """Restore :meth:`state_dict`; ``packer=False`` keeps this packer's own (empty) state:
        a checkpoint of another packer that held nothing back."""
        self.batcher.load_state_dict(state["batcher"])
        if packer:
            self.packer.load_state_dict(state["packer"])
        self._epochs = {}
        for row in state.get("epochs", []):
            self._epochs.setdefault((row[0], row[1]), []).append(list(row[2:]))
